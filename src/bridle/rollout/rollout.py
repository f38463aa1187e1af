"""Batched sampling that returns what online RL needs: prompt and response tokens, which rows finished (EOS or a
stop string), and the per-token log-probs and entropies of the distribution each token was drawn from.

Two samplers give the same `Rollout`. `fast` (the default): our own decode loop (`bridle.rollout.decode`), each
distinct prompt prefilled once for all its samples, finished rows dropped, the per-token choice as tensor ops
(`bridle.rollout.choice`). `hf`: HF `generate` with our logits processor (`bridle.rollout.hf_generate`), also the
fallback, with a one-line notice, for models the loop cannot drive. Both record log softmax(logits / temperature) of
the sampled token at each step: the log-prob under the sampling policy π (before truncation, as PPO's ratio needs), at
no extra forward pass.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bridle.data.chat import Prompt, render_prompt
from bridle.engine.logging import console, task_progress
from bridle.rollout.choice import truncate_logits
from bridle.rollout.decode import Decoded, decode, unsupported_reason
from bridle.rollout.hf_generate import hf_decode
from bridle.rollout.stops import StopStrings

__all__ = ["SAMPLERS", "Rollout", "SamplingSettings", "sample", "truncate_logits"]
SAMPLERS = ("fast", "hf")


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample. temperature 0 = greedy; top_k 0 and top_p 1 = no truncation."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    max_prompt_length: int = 0  # prompt tokens kept (from the end); 0 = all
    batch_size: int = 16  # rows (prompt × sample) decoded together
    sampler: str = "fast"  # "fast": our decode loop (HF generate where it cannot run); "hf": HF generate


@dataclass
class Rollout:
    """N sampled rows (prompt i repeated n times, then prompt i+1 ...). Per-row tensors are unpadded.

    response_ids[k] ends with EOS when the row finished by EOS; token_logps[k] / token_entropy[k] have one value per
    response token: log π(token) and the entropy of π at that step, π = softmax(logits / temperature).
    """

    prompt_ids: list[Tensor]
    response_ids: list[Tensor]
    token_logps: list[Tensor]
    token_entropy: list[Tensor]
    finished: list[bool]
    texts: list[str]
    prompt_index: list[int]
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.response_ids)

    @property
    def num_tokens(self) -> int:
        return sum(int(r.numel()) for r in self.response_ids)

    def metrics(self) -> dict[str, float]:
        lengths = torch.tensor([float(r.numel()) for r in self.response_ids])
        entropy = torch.cat(self.token_entropy) if self.num_tokens else torch.zeros(1)
        return {"rollout/tokens_per_s": self.num_tokens / max(self.seconds, 1e-9),
                "rollout/response_length": float(lengths.mean()) if len(lengths) else 0.0,
                "rollout/finished": sum(self.finished) / max(len(self), 1),
                "rollout/entropy": float(entropy.mean())}


@torch.no_grad()
def sample(model: Any, tokenizer: Any, prompts: Sequence[Prompt], *, n: int = 1,
           settings: SamplingSettings = SamplingSettings(), seed: int = 0, progress: bool = False) -> Rollout:
    """`n` samples for each prompt, decoded batch by batch with the KV cache. The same seed gives the same rows."""
    if n < 1:
        raise ValueError("n must be >= 1")
    if settings.sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {settings.sampler!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    texts = [render_prompt(p, tokenizer) for p in prompts]
    rows = [i for i in range(len(texts)) for _ in range(n)]
    fast = settings.sampler == "fast" and _fast_path(model)
    side, truncation = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    out = Rollout([], [], [], [], [], [], [])
    started = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]), task_progress("sampling", len(rows), show=progress) as bar:
            torch.manual_seed(seed)
            for start in range(0, len(rows), settings.batch_size):
                chunk = rows[start:start + settings.batch_size]
                _sample_chunk(model, tokenizer, texts, chunk, settings, fast, device, out)
                bar.advance(bar.task_ids[0], len(chunk))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, truncation
        model.train(was_training)
    out.seconds = time.perf_counter() - started
    return out


_NOTICED: set[str] = set()


def _fast_path(model: Any) -> bool:
    """Whether our decode loop can drive `model`; says once per model class when it cannot."""
    reason = unsupported_reason(model)
    if reason is not None and type(model).__name__ not in _NOTICED:
        _NOTICED.add(type(model).__name__)
        console.print(f"note: sampling with HF generate: the fast sampler cannot drive {type(model).__name__} "
                      f"({reason})", markup=False, soft_wrap=True)
    return reason is None


def _sample_chunk(model: Any, tokenizer: Any, texts: list[str], chunk: list[int], settings: SamplingSettings,
                  fast: bool, device: torch.device, out: Rollout) -> None:
    """Decode the rows of `chunk` (prompt indexes, a prompt's samples next to each other) and append them to `out`."""
    counts = Counter(chunk)  # rows of one prompt sit next to each other, in prompt order
    distinct = list(counts)
    repeats = torch.tensor([counts[i] for i in distinct])
    limit = settings.max_prompt_length or None
    enc = tokenizer([texts[i] for i in distinct], return_tensors="pt", padding=True, add_special_tokens=False,
                    truncation=limit is not None, max_length=limit).to(device)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    stops = StopStrings(tokenizer, settings.stop) if settings.stop else None
    choice = {"max_new_tokens": settings.max_new_tokens, "temperature": settings.temperature,
              "top_k": settings.top_k, "top_p": settings.top_p, "eos": eos, "pad": pad}
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if fast:
        decoded = decode(model, ids, mask, repeats, stop=stops, **choice)
    else:
        decoded = hf_decode(model, ids.repeat_interleave(repeats.to(device), 0),
                            mask.repeat_interleave(repeats.to(device), 0), stops=stops, **choice)
    _append(out, tokenizer, decoded, [ids[k][mask[k].bool()].cpu() for k in range(len(distinct))], distinct, repeats)


def _append(out: Rollout, tokenizer: Any, decoded: Decoded, prompts: list[Tensor], distinct: list[int],
            repeats: Tensor) -> None:
    tokens, logps, entropy = decoded.tokens.cpu(), decoded.logps.cpu(), decoded.entropy.cpu()
    row = 0
    for k, index in enumerate(distinct):
        for _ in range(int(repeats[k])):
            length = int(decoded.lengths[row])
            response = tokens[row, :length]
            out.prompt_ids.append(prompts[k])
            out.response_ids.append(response)
            out.token_logps.append(logps[row, :length])
            out.token_entropy.append(entropy[row, :length])
            out.finished.append(bool(decoded.finished[row]))
            out.texts.append(tokenizer.decode(response, skip_special_tokens=True))
            out.prompt_index.append(index)
            row += 1
