"""`sample`: the log-probs it records, truncation, how rows end (EOS, stop string, token limit), seeding."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bridle.methods.experience import Experience, collate_experience, response_logps
from bridle.models import tiny_causal_lm, tiny_tokenizer
from bridle.models.tiny import EOS_ID
from bridle.rollout import SamplingSettings, render_prompt, sample
from bridle.rollout.rollout import SAMPLERS, truncate_logits

PROMPTS = ["What is 3 + 4?", [{"role": "user", "content": "A longer prompt, so the first one is left-padded."}]]


def as_experience(rollout) -> list[Experience]:
    return [Experience(prompt_ids=p, response_ids=r) for p, r in zip(rollout.prompt_ids, rollout.response_ids)]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_recorded_logps_equal_a_separate_forward_pass_at_the_sampling_temperature(sampler):
    model, tokenizer = tiny_causal_lm(seed=1), tiny_tokenizer()
    settings = SamplingSettings(max_new_tokens=10, temperature=0.7, top_k=40, top_p=0.9, batch_size=4,
                                sampler=sampler)
    rollout = sample(model, tokenizer, PROMPTS, n=3, settings=settings, seed=5)
    assert len(rollout) == 6 and rollout.prompt_index == [0, 0, 0, 1, 1, 1]
    batch = collate_experience(as_experience(rollout), pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        forward, _ = response_logps(model, batch, temperature=0.7)
    for k, recorded in enumerate(rollout.token_logps):
        assert recorded.shape == rollout.response_ids[k].shape == rollout.token_entropy[k].shape
        torch.testing.assert_close(recorded, forward[k, :len(recorded)], rtol=0, atol=1e-4)
    # pre-truncation log-probs: tokens outside the kept set would be -inf, these are all finite and < 0
    assert all(bool(torch.isfinite(lp).all()) and bool((lp < 0).all()) for lp in rollout.token_logps)
    # entropy of softmax(logits / T): the tiny random model is near-uniform, so close to log(vocab) but below it
    entropy = torch.cat(rollout.token_entropy)
    assert bool((entropy > 0).all()) and bool((entropy <= math.log(model.config.vocab_size) + 1e-4).all())


def test_truncate_logits_keeps_top_k_then_the_nucleus_including_the_token_that_crosses_p():
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])  # second row: same values, reversed order
    logits = probs.log()

    def kept(scores):
        return torch.isfinite(scores).tolist()

    # top_k=2 keeps 0.4 and 0.3; renormalized they are 4/7 ≈ 0.571 and 3/7. The first alone is below 0.6, so the
    # second (which crosses 0.6) is kept too.
    assert kept(truncate_logits(logits, 2, 0.6)) == [[True, True, False, False], [False, False, True, True]]
    # top_p alone: 0.4 < 0.6, 0.4 + 0.3 = 0.7 crosses → keep two; p = 0.4 is reached by the first alone → keep one
    assert kept(truncate_logits(logits, 0, 0.6)) == [[True, True, False, False], [False, False, True, True]]
    assert kept(truncate_logits(logits, 0, 0.4)) == [[True, False, False, False], [False, False, False, True]]
    assert kept(truncate_logits(logits, 0, 0.75)) == [[True, True, True, False], [False, True, True, True]]
    # kept logits are unchanged; no truncation is the identity
    torch.testing.assert_close(truncate_logits(logits, 2, 0.6)[0, :2], logits[0, :2])
    torch.testing.assert_close(truncate_logits(logits, 0, 1.0), logits)


def constant_model(preferred: dict[int, float]) -> nn.Module:
    """A tiny Llama whose next-token logits ignore the context: `preferred` token ids get those logits, every other
    token of the vocabulary -30 (so sampling stays inside the tokenizer's ids)."""
    model = tiny_causal_lm(seed=0, tie_word_embeddings=False)
    head = nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    nn.init.zeros_(head.weight)
    nn.init.constant_(head.bias, -30.0)
    with torch.no_grad():
        for token, logit in preferred.items():
            head.bias[token] = logit
    model.lm_head = head
    return model


def byte_id(tokenizer, char: str) -> int:
    ids = tokenizer(char, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    return ids[0]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_rows_end_at_a_stop_string_at_eos_or_at_the_token_limit_and_masks_follow_lengths(sampler):
    tokenizer = tiny_tokenizer()
    x, y = byte_id(tokenizer, "x"), byte_id(tokenizer, "y")
    model = constant_model({x: 1.0, y: 1.0, EOS_ID: -0.4})  # P(EOS) ≈ 0.14 per step
    settings = SamplingSettings(max_new_tokens=7, temperature=1.0, stop=("xyx",), batch_size=32, sampler=sampler)
    rollout = sample(model, tokenizer, PROMPTS, n=16, settings=settings, seed=3)
    kinds = set()
    for k in range(len(rollout)):
        ids, text = rollout.response_ids[k].tolist(), rollout.texts[k]
        if EOS_ID in ids:  # ends with its first EOS, which it keeps
            assert ids.index(EOS_ID) == len(ids) - 1 and rollout.finished[k] and "xyx" not in text
            kinds.add("eos")
        elif "xyx" in text:  # ends right after the stop string
            assert text.endswith("xyx") and "xyx" not in text[:-1] and rollout.finished[k]
            kinds.add("stop")
        else:  # ran out of tokens
            assert len(ids) == 7 and not rollout.finished[k]
            kinds.add("limit")
        assert len(rollout.token_logps[k]) == len(ids)
    assert kinds == {"eos", "stop", "limit"}  # this seed gives rows of each kind in the one batch
    # The pad id is EOS: masks come from lengths, so a final EOS is a response token, and padding is not.
    assert tokenizer.pad_token_id == EOS_ID
    batch = collate_experience(as_experience(rollout), pad_id=tokenizer.pad_token_id)
    lengths = [len(r) for r in rollout.response_ids]
    assert batch["response_mask"].sum(-1).tolist() == lengths
    assert batch["attention_mask"].sum(-1).tolist() == [len(p) + n for p, n in zip(rollout.prompt_ids, lengths)]
    assert batch["weight"] == sum(lengths) == rollout.num_tokens


def test_greedy_rows_of_a_model_that_always_says_eos_are_one_eos_token():
    tokenizer = tiny_tokenizer()
    model = constant_model({EOS_ID: 5.0})
    rollout = sample(model, tokenizer, PROMPTS, n=2, settings=SamplingSettings(max_new_tokens=5, temperature=0.0))
    assert [r.tolist() for r in rollout.response_ids] == [[EOS_ID]] * 4
    assert rollout.finished == [True] * 4 and rollout.texts == [""] * 4
    assert rollout.metrics()["rollout/finished"] == 1.0 and rollout.metrics()["rollout/response_length"] == 1.0


def test_same_seed_same_rows_and_another_seed_other_rows():
    model, tokenizer = tiny_causal_lm(seed=2), tiny_tokenizer()
    settings = SamplingSettings(max_new_tokens=6, temperature=1.0, batch_size=4)
    a = sample(model, tokenizer, PROMPTS, n=3, settings=settings, seed=11)
    b = sample(model, tokenizer, PROMPTS, n=3, settings=settings, seed=11)
    c = sample(model, tokenizer, PROMPTS, n=3, settings=settings, seed=12)
    assert [r.tolist() for r in a.response_ids] == [r.tolist() for r in b.response_ids]
    assert all(torch.equal(x, y) for x, y in zip(a.token_logps, b.token_logps))
    assert [r.tolist() for r in a.response_ids] != [r.tolist() for r in c.response_ids]
    before = torch.random.get_rng_state()
    sample(model, tokenizer, PROMPTS, n=1, settings=settings, seed=11)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG stream is left alone
    assert tokenizer.padding_side == "right" and tokenizer.truncation_side == "right"


@pytest.mark.parametrize("limit", [5, 12])
def test_max_prompt_length_keeps_the_last_tokens_of_the_prompt(limit):
    model, tokenizer = tiny_causal_lm(seed=1), tiny_tokenizer()
    settings = SamplingSettings(max_new_tokens=2, temperature=0.0, max_prompt_length=limit)
    rollout = sample(model, tokenizer, PROMPTS, n=1, settings=settings)
    for prompt, ids in zip(PROMPTS, rollout.prompt_ids):
        full = tokenizer(render_prompt(prompt, tokenizer), add_special_tokens=False)["input_ids"]
        assert len(full) > limit and ids.tolist() == full[-limit:]
