"""Score the rows of a data file: prompt/completion rows get "score", preference rows "chosen_score" and
"rejected_score". Each output row is the input row with those fields added."""

from __future__ import annotations

from typing import Any, Literal

from bridle.data import detect_kind, load_rows, normalize
from bridle.errors import DataError
from bridle.feedback.reward_model import RewardModel


def load_records(source: str, *, kinds: tuple[str, ...], on_bad_row: Literal["error", "skip"] = "error"
                 ) -> tuple[str, list[dict[str, Any]], dict[int, Any]]:
    """(kind, canonical records, {row number: raw row}) for a file whose first row is one of `kinds`."""
    rows = load_rows(source)
    if not rows:
        raise DataError("no rows found.", source=source)
    first = next((r.value for r in rows if isinstance(r.value, dict)), None)
    kind = detect_kind(first) if first is not None else kinds[0]
    if kind not in kinds:
        raise DataError(f"rows look like {kind} data; this command reads {' or '.join(kinds)} rows.", source=source,
                        hint='Score rows with "prompt" and "completion", or "prompt", "chosen" and "rejected".')
    records, _ = normalize(rows, kind, on_bad_row=on_bad_row)
    return kind, records, {r.row: r.value for r in rows}


def score_file(reward_model: RewardModel, source: str, *, batch_size: int = 8, normalize_scores: bool = False,
               on_bad_row: Literal["error", "skip"] = "error", progress: bool = False) -> list[dict[str, Any]]:
    kind, records, raw = load_records(source, kinds=("sft", "preference"), on_bad_row=on_bad_row)
    sides = ("completion",) if kind == "sft" else ("chosen", "rejected")
    prompts = [r["prompt"] for r in records for _ in sides]
    responses = [r[side] for r in records for side in sides]
    scores = reward_model.score(prompts, responses, batch_size=batch_size, normalize=normalize_scores,
                                progress=progress)
    out = []
    for i, record in enumerate(records):
        row = dict(raw[record["_row"][1]])
        if kind == "sft":
            row["score"] = scores[i]
        else:
            row["chosen_score"], row["rejected_score"] = scores[2 * i], scores[2 * i + 1]
        out.append(row)
    return out
