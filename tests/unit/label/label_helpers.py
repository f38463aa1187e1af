"""Helpers for the labelling app's tests: candidate files, pairs, votes cast in a chosen order."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bridle.label import db
from bridle.label.assign import record_vote
from bridle.label.candidates import Pair


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


SIDE = {"a": "left", "b": "right", "tie": "tie", "both_bad": "both_bad"}  # canonical → clicked, sides as stored
FLIP = {"a": "right", "b": "left", "tie": "tie", "both_bad": "both_bad"}  # canonical → clicked, sides swapped


def cast(conn, votes: dict[int, list[str]], *, unsafe: set[int] = frozenset(), swapped: bool = False) -> list[int]:
    """Record `votes` (pair id → canonical choices, the i-th by annotator p<i>, made when missing), shown with sides
    swapped or not; returns the annotator ids."""
    ids = []
    for i in range(max(len(v) for v in votes.values())):
        found = conn.execute("SELECT id FROM annotators WHERE name = ?", (f"p{i}",)).fetchone()
        ids.append(found[0] if found else db.annotator_by_token(conn, db.add_annotator(conn, f"p{i}")).id)
    for pair_id, choices in votes.items():
        for who, choice in zip(ids, choices):
            conn.execute("INSERT INTO assignments VALUES (?, ?, ?, ?)", (who, pair_id, int(swapped), time.time()))
            record_vote(conn, who, pair_id, (FLIP if swapped else SIDE)[choice], f"k-{who}-{pair_id}",
                        unsafe=pair_id in unsafe, comment="looks risky" if pair_id in unsafe else "")
    return ids


def simple_pairs(n: int, *, gold: str | None = None, start: int = 0) -> list[Pair]:
    tag = "gold " if gold else ""
    return [Pair(f"{tag}question {i}", f"{tag}answer {i} a", f"{tag}answer {i} b", "test.jsonl", i + 1, gold=gold)
            for i in range(start, start + n)]
