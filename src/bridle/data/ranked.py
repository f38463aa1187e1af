"""Ranked responses for RRHF: several responses to one prompt, each with a score; all go through one forward pass."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from bridle.data.formats import NEEDS, detect_kind, normalize
from bridle.data.preference import tokenize_response
from bridle.data.sources import load_rows
from bridle.data.tokenize import DataReport, TokenizedExample, tokenize_each
from bridle.data.unpaired import sequences_collate
from bridle.errors import DataError


@dataclass
class TokenizedRanked:
    """K ≥ 2 responses to one prompt and their scores (higher is better)."""

    responses: list[TokenizedExample]
    scores: list[float]


def load_ranked_dataset(source: str | os.PathLike | Sequence[Mapping], tokenizer: Any, *, max_length: int,
                        max_prompt_length: int | None = None, on_bad_row: Literal["error", "skip"] = "error",
                        split: str = "train") -> tuple[list[TokenizedRanked], DataReport]:
    """load_rows → normalize ("ranked"; preference pairs become two responses scored 1 and 0) → tokenize."""
    rows = load_rows(source, split=split)
    if not rows:
        raise DataError("no rows found.", source=str(source) if isinstance(source, (str, os.PathLike)) else "<list>",
                        hint=NEEDS["ranked"])
    first = rows[0].value if isinstance(rows[0].value, Mapping) else {}
    kind = "preference" if first and detect_kind(first) == "preference" else "ranked"
    records, bad = normalize(rows, kind, on_bad_row=on_bad_row)
    if kind == "preference":
        records = [{"prompt": r["prompt"], "responses": [r["chosen"], r["rejected"]], "scores": [1.0, 0.0],
                    "_row": r["_row"]} for r in records]
    if not records:
        raise DataError(f"no usable rows ({bad.reasons()}).", source=rows[0].source, hint=NEEDS["ranked"])
    limit = max_prompt_length if max_prompt_length is not None else max_length // 2
    items, unusable = tokenize_each(records, lambda r: TokenizedRanked(
        [tokenize_response(r, resp, tokenizer, max_length=max_length, max_prompt_length=limit)
         for resp in r["responses"]], list(r["scores"])), on_bad_row)
    bad.merge(unusable)
    if not items:
        raise DataError(f"no usable rows ({bad.reasons()}).", source=rows[0].source, hint=NEEDS["ranked"])
    report = DataReport(rows=len(rows), kept=len(items), bad=bad, max_length=max_length,
                        truncated=sum(any(e.truncated for e in it.responses) for it in items))
    return items, report


def ranked_collate(items: Sequence[TokenizedRanked], *, pad_id: int) -> dict[str, torch.Tensor]:
    """All responses of all prompts as one padded batch (N, T), plus where each lands in a (B, K) grid:
    `slot_row`, `slot_col` (N,), `scores` and `valid` (B, K) with K the most responses any prompt has."""
    flat = [e for it in items for e in it.responses]
    batch = sequences_collate(flat, pad_id=pad_id)
    batch.update(ranked_grid(items), num_tokens=torch.tensor(int(batch["attention_mask"].sum())))
    return batch


def ranked_grid(items: Sequence[TokenizedRanked]) -> dict[str, torch.Tensor]:
    """Where the items' responses, numbered prompt by prompt, land in a (B, K) grid: `slot_row`, `slot_col` (N,),
    `scores` and `valid` (B, K) with K the most responses any prompt has."""
    width = max(len(it.responses) for it in items)
    scores = torch.zeros((len(items), width))
    valid = torch.zeros((len(items), width), dtype=torch.bool)
    rows, cols = [], []
    for b, it in enumerate(items):
        k = len(it.responses)
        scores[b, :k] = torch.tensor(it.scores)
        valid[b, :k] = True
        rows += [b] * k
        cols += list(range(k))
    return {"scores": scores, "valid": valid, "slot_row": torch.tensor(rows), "slot_col": torch.tensor(cols)}
