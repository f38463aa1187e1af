"""Learning-rate schedules: linear warmup, then cosine / linear decay to 0, or constant."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, kind: str) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based: the factor used for the step about to run)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, kind: str) -> LambdaLR:
    return LambdaLR(optimizer, lambda s: lr_factor(s, total_steps=total_steps, warmup_steps=warmup_steps, kind=kind))
