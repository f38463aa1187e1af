"""Sample n responses per prompt with HF `generate`: left padding (so every row's new tokens start at the same
column), the KV cache on, the chat template's generation prompt, and stop at EOS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bridle.engine.logging import task_progress

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


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: Sequence[Prompt], *, n: int = 1, max_new_tokens: int = 128,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0, batch_size: int = 8,
             progress: bool = False) -> list[list[str]]:
    """`n` sampled completions for each prompt (temperature 0 = greedy, then n copies of one answer).

    `batch_size` counts prompts per `generate` call (each call decodes batch_size · n rows). The same seed gives
    the same samples. Returns completions as text, special tokens removed.
    """
    model.eval()
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    sampling = temperature > 0
    settings: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=sampling, use_cache=True,
                                    eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                                    num_return_sequences=n if sampling else 1)
    if sampling:
        settings.update(temperature=temperature, top_p=top_p, top_k=top_k or None)
    texts = [render_prompt(p, tokenizer) for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[list[str]] = []
    try:
        with torch.random.fork_rng(devices=[]), task_progress("sampling", len(texts), show=progress) as bar:
            torch.manual_seed(seed)
            for start in range(0, len(texts), batch_size):
                chunk = texts[start:start + batch_size]
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                rows = model.generate(**enc, **settings)[:, enc["input_ids"].shape[1]:]
                decoded = tokenizer.batch_decode(rows, skip_special_tokens=True)
                per = n if sampling else 1
                for i in range(len(chunk)):
                    group = decoded[i * per:(i + 1) * per]
                    out.append(group if sampling else group * n)
                bar.advance(bar.task_ids[0], len(chunk))
    finally:
        tokenizer.padding_side = side
    return out
