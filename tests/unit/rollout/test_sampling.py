"""Sampling: left padding does not change a prompt's continuation, and a seed fixes the samples."""

from __future__ import annotations

from bridle.models import tiny_causal_lm, tiny_tokenizer
from bridle.rollout import generate, render_prompt

PROMPTS = ["Hi", [{"role": "user", "content": "A much longer prompt that forces left padding of the first."}]]


def test_greedy_continuation_is_the_same_alone_and_left_padded_in_a_batch():
    model, tokenizer = tiny_causal_lm(seed=1), tiny_tokenizer()
    batched = generate(model, tokenizer, PROMPTS, n=2, max_new_tokens=6, temperature=0.0)
    alone = [generate(model, tokenizer, [p], n=1, max_new_tokens=6, temperature=0.0)[0][0] for p in PROMPTS]
    assert [group[0] for group in batched] == alone
    assert all(group[0] == group[1] for group in batched)  # greedy: n copies of one answer
    assert tokenizer.padding_side == "right"  # restored


def test_same_seed_same_samples_and_text_prompts_use_the_chat_template():
    model, tokenizer = tiny_causal_lm(seed=1), tiny_tokenizer()
    a = generate(model, tokenizer, PROMPTS, n=3, max_new_tokens=5, temperature=1.0, seed=7, batch_size=1)
    b = generate(model, tokenizer, PROMPTS, n=3, max_new_tokens=5, temperature=1.0, seed=7, batch_size=1)
    assert a == b and [len(g) for g in a] == [3, 3]
    assert render_prompt("Hi", tokenizer).endswith("<|im_start|>assistant\n")
