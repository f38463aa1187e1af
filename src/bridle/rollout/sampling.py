"""Prompts as the policy sees them (chat template + generation prompt), and `generate`: n text completions per
prompt, a thin text-only view of `rollout.sample`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Prompt = str | list[dict[str, str]]


def as_messages(prompt: Prompt, tokenizer: Any) -> Prompt:
    """A text prompt becomes one user message when the tokenizer has a chat template (chat models expect it);
    message lists pass through. Rewards must see the prompt in this same form."""
    if isinstance(prompt, str) and getattr(tokenizer, "chat_template", None):
        return [{"role": "user", "content": prompt}]
    return prompt


def render_prompt(prompt: Prompt, tokenizer: Any) -> str:
    """The text the model continues: the chat template with the assistant's generation prompt, or the raw text."""
    prompt = as_messages(prompt, tokenizer)
    if isinstance(prompt, str):
        return prompt
    clean = [{"role": m["role"], "content": m["content"]} for m in prompt]
    return tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=True)


def generate(model: Any, tokenizer: Any, prompts: Sequence[Prompt], *, n: int = 1, max_new_tokens: int = 128,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0, batch_size: int = 8,
             progress: bool = False) -> list[list[str]]:
    """`n` sampled completions (text, special tokens removed) for each prompt; temperature 0 = greedy, then n
    copies of one answer. `batch_size` counts prompts per `generate` call. The same seed gives the same samples."""
    from bridle.rollout.rollout import SamplingSettings, sample

    per = n if temperature > 0 else 1
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                batch_size=batch_size * per)
    rollout = sample(model, tokenizer, prompts, n=per, settings=settings, seed=seed, progress=progress)
    groups = [rollout.texts[i * per:(i + 1) * per] for i in range(len(prompts))]
    return groups if per == n else [group * n for group in groups]
