"""The fast sampler (`bridle.rollout.decode`): the same greedy tokens as HF generate on Llama, Qwen2 and GPT-2,
left padding that changes nothing, rows that leave the batch when they end, and a loop that stops with the last row."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from bridle.models import tiny_causal_lm, tiny_tokenizer
from bridle.models.tiny import EOS_ID
from bridle.rollout import SamplingSettings, sample
from bridle.rollout import rollout as rollout_module
from bridle.rollout.decode import decode, unsupported_reason
from bridle.rollout.kv_cache import ReservedLayer, reserved_cache

PROMPTS = ["Hi", [{"role": "user", "content": "A much longer prompt, so the first one is left-padded."}],
           "What is 3 + 4?"]


def tiny_model(kind: str) -> torch.nn.Module:
    """A 2-layer random model of each family (ids as the tiny tokenizer's: eos = pad = 2), its weights drawn wide
    enough that the greedy continuation depends on the prompt."""
    ids = {"vocab_size": 512, "eos_token_id": EOS_ID, "pad_token_id": EOS_ID, "bos_token_id": None,
           "initializer_range": 0.3}
    layers = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128, "max_position_embeddings": 512}
    config = (LlamaConfig(**layers, **ids) if kind == "llama" else Qwen2Config(**layers, **ids) if kind == "qwen2"
              else GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512, **ids))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    return model.eval()


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_greedy_tokens_and_logps_equal_hf_generate(kind):
    model, tokenizer = tiny_model(kind), tiny_tokenizer()
    assert unsupported_reason(model) is None
    settings = SamplingSettings(max_new_tokens=8, temperature=0.0, batch_size=6)
    fast = sample(model, tokenizer, PROMPTS, n=2, settings=settings)
    hf = sample(model, tokenizer, PROMPTS, n=2, settings=dataclasses.replace(settings, sampler="hf"))
    assert [r.tolist() for r in fast.response_ids] == [r.tolist() for r in hf.response_ids]
    assert [p.tolist() for p in fast.prompt_ids] == [p.tolist() for p in hf.prompt_ids]
    assert fast.prompt_index == hf.prompt_index == [0, 0, 1, 1, 2, 2]
    for ours, theirs in zip(fast.token_logps + fast.token_entropy, hf.token_logps + hf.token_entropy):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # the prompts differ, so a row decoded on another prompt's cache would show here
    assert len({tuple(r.tolist()) for r in fast.response_ids}) == 3


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_left_padded_batch_gives_each_prompt_its_tokens_alone(kind):
    model, tokenizer = tiny_model(kind), tiny_tokenizer()
    settings = SamplingSettings(max_new_tokens=6, temperature=0.0, batch_size=16)
    batched = sample(model, tokenizer, PROMPTS, n=3, settings=settings)
    widths = {len(p) for p in batched.prompt_ids}
    assert len(widths) == 3  # three lengths in one batch: two of them left-padded
    for i, prompt in enumerate(PROMPTS):
        alone = sample(model, tokenizer, [prompt], n=1, settings=settings).response_ids[0].tolist()
        assert all(batched.response_ids[k].tolist() == alone for k in range(len(batched))
                   if batched.prompt_index[k] == i)


def test_a_seed_fixes_the_samples_and_the_callers_rng_is_untouched():
    model, tokenizer = tiny_causal_lm(seed=2), tiny_tokenizer()
    settings = SamplingSettings(max_new_tokens=6, temperature=1.0, top_k=50, top_p=0.95, batch_size=5)
    before = torch.random.get_rng_state()
    a, b = (sample(model, tokenizer, PROMPTS, n=3, settings=settings, seed=4) for _ in range(2))
    c = sample(model, tokenizer, PROMPTS, n=3, settings=settings, seed=5)
    assert torch.equal(before, torch.random.get_rng_state())
    assert [r.tolist() for r in a.response_ids] == [r.tolist() for r in b.response_ids]
    assert all(torch.equal(x, y) for x, y in zip(a.token_logps, b.token_logps))
    assert [r.tolist() for r in a.response_ids] != [r.tolist() for r in c.response_ids]
    # samples of one prompt differ from each other: each row draws its own numbers
    assert len({tuple(a.response_ids[k].tolist()) for k in range(3)}) > 1


class CountingModel(torch.nn.Module):
    """Wraps a causal LM; records the batch size of every forward call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=True,
                logits_to_keep=0):
        self.calls.append(input_ids.shape[0])
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          cache=cache, use_cache=use_cache, logits_to_keep=logits_to_keep)


def eos_model(eos_logit: float) -> torch.nn.Module:
    """A tiny Llama whose next token is 'x', 'y' or EOS whatever the context (EOS at logit `eos_logit`)."""
    model = tiny_causal_lm(seed=0, tie_word_embeddings=False)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.constant_(head.bias, -30.0)
    with torch.no_grad():
        head.bias[100], head.bias[101], head.bias[EOS_ID] = 1.0, 1.0, eos_logit
    model.lm_head = head
    return model


def test_finished_rows_leave_the_batch_and_the_loop_ends_with_the_last_row():
    counting = CountingModel(eos_model(1.0))  # P(EOS) = 1/3 per step: rows end at different steps, all within 40
    ids = torch.tensor([[5, 6, 7], [0, 8, 9]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    torch.manual_seed(0)
    out = decode(counting, ids, mask, torch.tensor([8, 8]), max_new_tokens=40, temperature=1.0, top_k=0, top_p=1.0,
                 eos=EOS_ID, pad=EOS_ID)
    lengths = out.lengths.tolist()
    assert bool(out.finished.all()) and max(lengths) < 40
    assert out.forwards == len(counting.calls) == max(lengths)  # one prefill + one call per step after the first
    assert counting.calls[0] == 2  # each prompt prefilled once for its 8 samples
    decode_calls = counting.calls[1:]
    assert decode_calls[0] <= 16 and decode_calls == sorted(decode_calls, reverse=True)
    assert decode_calls[-1] < 16  # finished rows were dropped before the end
    for row, length in enumerate(lengths):  # each row: its tokens up to its first EOS, pad after
        tokens = out.tokens[row].tolist()
        assert tokens[length - 1] == EOS_ID and EOS_ID not in tokens[:length - 1]
        assert set(tokens[length:]) <= {EOS_ID} and bool((out.logps[row, length:] == 0).all())


def test_rows_of_a_model_that_says_eos_first_cost_one_forward():
    counting = CountingModel(eos_model(20.0))
    out = decode(counting, torch.tensor([[5, 6]]), torch.ones(1, 2, dtype=torch.long), torch.tensor([4]),
                 max_new_tokens=30, temperature=0.0, top_k=0, top_p=1.0, eos=EOS_ID, pad=EOS_ID)
    assert out.forwards == 1 and counting.calls == [1] and out.lengths.tolist() == [1] * 4


def test_the_reserved_cache_holds_what_the_dynamic_cache_would():
    model = tiny_causal_lm(seed=3)
    ids = torch.randint(3, 200, (2, 5), generator=torch.Generator().manual_seed(0))
    cache = reserved_cache(model.config, capacity=6)
    assert all(isinstance(layer, ReservedLayer) for layer in cache.layers)
    with torch.no_grad():
        ours = model(input_ids=ids[:, :4], cache=cache, use_cache=True)
        ours = model(input_ids=ids[:, 4:], cache=cache, use_cache=True).logits
        want = model(input_ids=ids).logits[:, 4:]
    torch.testing.assert_close(ours, want, rtol=0, atol=1e-5)
    assert cache.get_seq_length() == 5
    cache.batch_select_indices(torch.tensor([1, 1, 0]))
    assert cache.layers[0].keys.shape[0] == 3 and torch.equal(cache.layers[0].keys[0], cache.layers[0].keys[1])
    with pytest.raises(ValueError, match="holds 6 positions"):
        cache.layers[0].update(*(torch.zeros(3, 2, 2, 16),) * 2)


def test_models_the_loop_cannot_drive_are_named_and_sampled_by_hf_generate(monkeypatch, capsys):
    assert "encoder-decoder" in unsupported_reason(SimpleNamespace(config=SimpleNamespace(is_encoder_decoder=True)))
    model, tokenizer = tiny_causal_lm(seed=1), tiny_tokenizer()
    settings = SamplingSettings(max_new_tokens=4, temperature=0.0)
    want = sample(model, tokenizer, PROMPTS, settings=settings).response_ids

    def no_loop(*args, **kwargs):
        raise AssertionError("the decode loop ran")

    monkeypatch.setattr(rollout_module, "unsupported_reason", lambda m: "a reason of the test")
    monkeypatch.setattr(rollout_module, "decode", no_loop)
    monkeypatch.setattr(rollout_module, "_NOTICED", set())
    for _ in range(2):
        got = sample(model, tokenizer, PROMPTS, settings=settings).response_ids
        assert [r.tolist() for r in got] == [r.tolist() for r in want]
    assert capsys.readouterr().err.count("sampling with HF generate") == 1  # one line, once per model class
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample(model, tokenizer, PROMPTS[:1], settings=dataclasses.replace(settings, sampler="vllm"))
