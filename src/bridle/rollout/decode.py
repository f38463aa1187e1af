"""Our own decode loop for decoder-only models: each distinct prompt is prefilled once and its KV cache expanded to
its samples, then one token per step for every unfinished row, finished rows dropped from the batch, the loop ending
as soon as every row has finished.

What HF `generate` does per token beyond the model's forward (logits processors and stopping criteria called per
step, the growing `input_ids`, per-row prefill of G identical prompts) is replaced by a few tensor ops
(`bridle.rollout.choice`); the forward itself is the model's own, on a `DynamicCache`. Models this loop cannot drive
(encoder-decoders, caches that are not plain per-layer key/value tensors) are refused by `unsupported_reason`, and
`sample` falls back to HF `generate` for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bridle.rollout.choice import choose

# Rows that stop within one step are dropped from the batch (their key/value rows copied out) once this share of the
# batch has finished: a copy of the cache costs about what one step's cache growth does, so it is not done per row.
COMPACT_SHARE = 1 / 8


@dataclass
class Decoded:
    """N rows (prompt index repeated per sample). tokens (N, T): generated ids, `pad` after a row's end;
    logps / entropy (N, T): log π(token) and the entropy of π per step; lengths (N,): tokens per row (EOS or the stop
    string's last token included); finished (N,): ended by EOS or a stop string; forwards: model calls made."""

    tokens: Tensor
    logps: Tensor
    entropy: Tensor
    lengths: Tensor
    finished: Tensor
    forwards: int


# (row ids, their generated tokens so far (R, t+1)) -> which of those rows just completed a stop string (R,)
StopCheck = Callable[[Tensor, Tensor], Tensor]


def _forward_params(model: Any) -> dict[str, inspect.Parameter]:
    """The parameters of the model's own forward (under a peft wrapper, the base model's)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return dict(inspect.signature(base.forward).parameters)


def _cache_argument(model: Any) -> str:
    """`cache` in current transformers; `past_key_values` before the rename."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def unsupported_reason(model: Any) -> str | None:
    """Why our loop cannot drive `model` (None when it can)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    params = _forward_params(model)
    if not {"cache", "past_key_values"} & set(params) or "position_ids" not in params:
        return "a forward without `cache` / `position_ids` arguments"
    try:  # per-layer caches came with transformers 4.56-era refactors; older ones have no DynamicLayer
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        layers = DynamicCache(config=config).layers
    except Exception as error:  # noqa: BLE001  (any failure here means: let HF pick its cache)
        return f"no per-layer DynamicCache for its config in this transformers ({type(error).__name__})"
    if not layers:
        return "no per-layer DynamicCache for its config in this transformers"
    odd = {type(layer).__name__ for layer in layers if type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer)}
    return f"cache layers of type {', '.join(sorted(odd))}" if odd else None


def _forward(model: Any, ids: Tensor, mask: Tensor, positions: Tensor, cache: Any,
             extra: dict[str, Any]) -> Tensor:
    """Logits of the last position, (B, V), with the cache updated in place."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **{extra["cache_argument"]: cache}, **extra["kwargs"])
    return out.logits[:, -1]


@torch.no_grad()
def decode(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, repeats: Tensor, *, max_new_tokens: int,
           temperature: float, top_k: int, top_p: float, eos: int | None, pad: int,
           stop: StopCheck | None = None) -> Decoded:
    """Sample `repeats[i]` continuations of prompt i. prompt_ids / prompt_mask: (P, W), left-padded, the mask from
    the prompts' lengths (never from comparing ids with the pad id); repeats: (P,) samples per prompt.
    Rows come out prompt by prompt: prompt 0's samples first. Draws use the global torch RNG: per step, one
    uniform number per row, finished rows included, so a row's draws do not depend on when others finished."""
    from bridle.rollout.kv_cache import reserved_cache  # imports transformers' cache layers: only when decoding

    device = prompt_ids.device
    extra = {"cache_argument": _cache_argument(model),
             "kwargs": {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(model) else {}}
    mask = prompt_mask.long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = reserved_cache(model.config, prompt_ids.shape[1] + max_new_tokens)
    logits = _forward(model, prompt_ids, mask, positions, cache, extra)  # each prompt once
    forwards = 1
    source = torch.arange(len(repeats), device=device).repeat_interleave(repeats.to(device))
    if len(source) != len(prompt_ids) or bool((repeats != 1).any()):
        cache.batch_select_indices(source)  # prompt i's keys/values, once per sample
    logits, width = logits[source], prompt_ids.shape[1]
    rows = len(source)
    full_mask = torch.zeros(rows, width + max_new_tokens, dtype=torch.long, device=device)
    full_mask[:, :width] = mask[source]
    next_position = positions[source, -1] + 1  # (rows,)
    tokens = torch.full((rows, max_new_tokens), pad, dtype=torch.long, device=device)
    logps = torch.zeros(rows, max_new_tokens, device=device)
    entropy = torch.zeros(rows, max_new_tokens, device=device)
    lengths = torch.full((rows,), max_new_tokens, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    active = torch.arange(rows, device=device)  # the original row of each batch row
    for step in range(max_new_tokens):
        uniform = torch.rand(rows, dtype=torch.float64, device=device)[active] if temperature > 0 else None
        pick = choose(logits, temperature=temperature, top_k=top_k, top_p=top_p, uniform=uniform)
        live = ~finished[active]  # batch rows still decoding (finished ones wait for the next compaction)
        rows_now = active[live]
        new = pick.tokens[live]
        tokens[rows_now, step], logps[rows_now, step], entropy[rows_now, step] = new, pick.logps[live], \
            pick.entropy[live]
        done = new == eos if eos is not None else torch.zeros_like(new, dtype=torch.bool)
        if stop is not None:
            done |= stop(rows_now, tokens[rows_now, :step + 1])
        finished[rows_now] = done
        lengths[rows_now[done]] = step + 1
        if step + 1 == max_new_tokens or bool(finished.all()):
            break
        fed = pick.tokens.masked_fill(~live, pad)
        stale = int(finished[active].sum())
        if stale and stale >= max(1, int(len(active) * COMPACT_SHARE)):
            keep = (~finished[active]).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, fed = active[keep], fed[keep]
        full_mask[active, width + step] = 1
        logits = _forward(model, fed.unsqueeze(1), full_mask[active, :width + step + 1],
                          next_position[active].unsqueeze(1) + step, cache, extra)
        forwards += 1
    return Decoded(tokens, logps, entropy, lengths, finished, forwards)
