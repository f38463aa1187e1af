"""Held-out splits that depend only on the seed, so a resumed or repeated run evaluates on the same examples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from bridle.config import TrainConfig
from bridle.data import DataReport

T = TypeVar("T")


def split_eval(items: Sequence[T], fraction: float, *, seed: int) -> tuple[list[T], list[T]]:
    """(train, eval): a seeded random `fraction` of items held out (at least one when fraction > 0)."""
    if fraction <= 0 or len(items) < 2:
        return list(items), []
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = min(len(items) - 1, max(1, round(fraction * len(items))))
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def train_and_eval(config: TrainConfig, load: Callable[[str], tuple[list[T], DataReport]]
                   ) -> tuple[list[T], list[T], list[str]]:
    """Items from `--data`, and eval items from `--eval-data` or a seeded `--eval-fraction` of them, with report
    lines for the user. `load(source)` tokenizes one source (every method passes its own loader)."""
    items, report = load(config.data)
    lines = [f"train data: {report.summary()}"]
    if config.eval_data:
        eval_items, eval_report = load(config.eval_data)
        lines.append(f"eval data: {eval_report.summary()}")
    else:
        items, eval_items = split_eval(items, config.eval_fraction, seed=config.seed)
        if eval_items:
            lines.append(f"held out {len(eval_items)} of them for evaluation (--eval-fraction {config.eval_fraction})")
    return items, eval_items, lines
