"""The fallback sampler: HF `generate` with our logits processor (temperature, top-k, top-p; recording log π of the
sampled token and the entropy of π at each step, before truncation) and stop strings as a stopping criterion. Used for
models our own decode loop (`bridle.rollout.decode`) cannot drive, and on request (`--sampler hf`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria

from bridle.rollout.choice import entropy_of, sampling_logprobs, truncate_logits
from bridle.rollout.decode import Decoded
from bridle.rollout.stops import StopStrings


class _SamplerLog(LogitsProcessor):
    """Applies temperature / top-k / top-p, and records the sampling log-prob and entropy of every step."""

    def __init__(self, temperature: float, top_k: int, top_p: float) -> None:
        self.temperature = temperature if temperature > 0 else 1.0
        self.top_k, self.top_p = top_k, top_p
        self.logps: list[Tensor] = []
        self.entropy: list[Tensor] = []
        self._last: Tensor | None = None  # log-probs of the previous step, (N, V)

    def take(self, tokens: Tensor) -> None:
        """Record log π of the tokens sampled at the previous step."""
        if self._last is not None:
            self.logps.append(self._last.gather(-1, tokens.unsqueeze(-1)).squeeze(-1))
            self._last = None

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        self.take(input_ids[:, -1])
        logp = sampling_logprobs(scores, self.temperature)
        self._last = logp
        self.entropy.append(entropy_of(logp))
        return truncate_logits(scores.float() / self.temperature, self.top_k, self.top_p).to(scores.dtype)


class _StopCriterion(StoppingCriteria):
    """Stops a row once its generated text contains a stop string; remembers the step it happened at."""

    def __init__(self, stops: StopStrings, prompt_length: int, rows: int) -> None:
        self.stops, self.prompt_length = stops, prompt_length
        self.stopped_at = [-1] * rows

    def __call__(self, input_ids: Tensor, scores: Tensor, **kwargs: Any) -> Tensor:
        step = input_ids.shape[1] - self.prompt_length - 1
        hit = self.stops(torch.arange(len(input_ids)), input_ids[:, -(step + 1):])
        for row in range(len(input_ids)):
            if self.stopped_at[row] < 0 and bool(hit[row]):
                self.stopped_at[row] = step
        return torch.tensor([s >= 0 for s in self.stopped_at], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def hf_decode(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, *, max_new_tokens: int, temperature: float,
              top_k: int, top_p: float, eos: int | None, pad: int, stops: StopStrings | None = None) -> Decoded:
    """One HF `generate` call over the rows (N, W) (left-padded); the same `Decoded` as our loop returns."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0, temperature=1.0, top_k=0,
                              top_p=1.0, use_cache=True, eos_token_id=eos, pad_token_id=pad)
    width = prompt_ids.shape[1]
    recorder = _SamplerLog(temperature, top_k, top_p)
    criterion = _StopCriterion(stops, width, len(prompt_ids)) if stops is not None else None
    sequences = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config,
                               logits_processor=LogitsProcessorList([recorder]),
                               stopping_criteria=[criterion] if criterion else None)
    generated = sequences[:, width:]
    recorder.take(generated[:, -1])
    logps, entropy = torch.stack(recorder.logps, 1), torch.stack(recorder.entropy, 1)
    rows, steps = generated.shape
    lengths = torch.full((rows,), steps, dtype=torch.long)
    finished = torch.zeros(rows, dtype=torch.bool)
    for row in range(rows):
        hits = (generated[row] == eos).nonzero() if eos is not None else []
        if len(hits):
            lengths[row], finished[row] = int(hits[0]) + 1, True
        if criterion is not None and 0 <= criterion.stopped_at[row] < int(lengths[row]):
            lengths[row], finished[row] = criterion.stopped_at[row] + 1, True
    return Decoded(generated, logps, entropy, lengths, finished, forwards=steps)
