"""Padding-free batches for sequence-level losses: all sequences of a batch back to back in one row.

`position_ids` restart at 0 for each sequence and there is no attention_mask, so transformers keeps the sequences
from attending to one another (the same mechanism as `packing.py`). `segment` (1, T) says which sequence each
position belongs to, so per-sequence log-prob sums come back with one `index_add_`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bridle.data.tokenize import IGNORE_INDEX, TokenizedExample


def padding_free_collate(examples: Sequence[TokenizedExample]) -> dict[str, torch.Tensor]:
    """input_ids, labels, position_ids, segment: (1, Σ lengths). Each sequence's first label is -100 (nothing
    predicts it across the boundary); completion labels never sit at a sequence's first position anyway."""
    ids, labels, positions, segment = [], [], [], []
    for k, e in enumerate(examples):
        n = len(e.input_ids)
        ids.extend(e.input_ids)
        labels.extend([IGNORE_INDEX, *e.labels[1:]])
        positions.extend(range(n))
        segment.extend([k] * n)
    as_row = lambda values: torch.tensor(values, dtype=torch.long).unsqueeze(0)  # noqa: E731
    return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(positions),
            "segment": as_row(segment)}
