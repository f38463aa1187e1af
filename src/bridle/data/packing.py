"""Batch tokenized examples: right-padded batches, or whole examples packed into rows with restarting positions.

Packed rows carry `position_ids` and no `attention_mask`: transformers then treats each run of positions that
restarts at 0 as its own sequence (flash/sdpa varlen), so examples never attend to one another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bridle.data.tokenize import IGNORE_INDEX, TokenizedExample


@dataclass
class PackedRow:
    """Several whole examples back to back; `position_ids` restart at 0 for each example."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]


def _num_loss_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Count of label positions the causal loss uses: labels[:, 1:] != -100 (position 0 is never a target)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum()


def pad_collate(examples: Sequence[TokenizedExample | PackedRow], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: `input_ids`, `attention_mask`, `labels` (B, T) and `num_loss_tokens` ()."""
    if not examples:
        raise ValueError("pad_collate needs at least one example")
    width = max(len(e.input_ids) for e in examples)
    batch = len(examples)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(e.labels, dtype=torch.long)
        attention_mask[i, :n] = 1  # from lengths, never from pad_id (pad may equal EOS)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "num_loss_tokens": _num_loss_tokens(labels)}


def pack_examples(examples: Sequence[TokenizedExample], *, max_length: int) -> list[PackedRow]:
    """First-fit-decreasing packing of whole examples into rows of at most `max_length` tokens.

    Deterministic: examples are taken longest first, ties by original index. Each example's first label is set
    to -100 so it is not predicted from the previous example's last token.
    """
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i].input_ids)
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, more than max_length {max_length}; tokenize with "
                             "the same max_length to truncate it")
        slot = next((b for b, free in enumerate(room) if free >= n), None)
        if slot is None:
            bins.append([i])
            room.append(max_length - n)
        else:
            bins[slot].append(i)
            room[slot] -= n
    rows = []
    for members in bins:
        row = PackedRow([], [], [])
        for i in members:
            e = examples[i]
            row.input_ids.extend(e.input_ids)
            row.labels.extend([IGNORE_INDEX, *e.labels[1:]] if e.labels else [])
            row.position_ids.extend(range(len(e.input_ids)))
        rows.append(row)
    return rows


def packed_collate(rows: Sequence[PackedRow], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad packed rows: `input_ids`, `position_ids`, `labels` (B, T), `num_loss_tokens` (); no attention_mask.

    Padding is its own segment (positions 0, 1, 2, ...) with labels -100, so it never joins a real example.
    """
    if not rows:
        raise ValueError("packed_collate needs at least one row")
    batch = pad_collate(rows, pad_id=pad_id)  # same padding of ids and labels; the mask is replaced by positions
    lengths = batch.pop("attention_mask").sum(-1).tolist()
    width = batch["input_ids"].shape[1]
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, n) in enumerate(zip(rows, lengths)):
        position_ids[i, :n] = torch.tensor(r.position_ids, dtype=torch.long)
        position_ids[i, n:] = torch.arange(width - n, dtype=torch.long)
    batch["position_ids"] = position_ids
    return batch
