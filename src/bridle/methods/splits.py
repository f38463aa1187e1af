"""Held-out splits that depend only on the seed, so a resumed or repeated run evaluates on the same examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def split_eval(items: Sequence[T], fraction: float, *, seed: int) -> tuple[list[T], list[T]]:
    """(train, eval): a seeded random `fraction` of items held out (at least one when fraction > 0)."""
    if fraction <= 0 or len(items) < 2:
        return list(items), []
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = min(len(items) - 1, max(1, round(fraction * len(items))))
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]
