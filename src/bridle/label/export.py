"""Votes → preference rows (for `bridle rm` / `bridle dpo`) or verdict rows (human win rates), by a stated rule.

The rule, per regular pair (gold pairs measure annotators and are never exported):

1. A pair counts once it has at least `min_votes` votes (default: the database's k votes per pair).
2. Its label is the choice with more votes than every other one among "A better", "B better", "tie" and "both bad".
   When two choices share the top count (1 A, 1 B; or 1 A, 1 tie, 1 both bad) the label is "split".
3. Preference rows: labels "a" and "b" become {"prompt", "chosen", "rejected"} with the vote counts, the share
   of votes that agree with the label (`agreement`), unsafe flags and comments. Labels "tie", "both_bad" and
   "split" give no row (there is no preference to learn); the summary counts them.
4. Verdict rows (for win rates): "a" → winner "A" (outcome 1), "b" → "B" (0), and "tie", "both_bad", "split" → "tie"
   (0.5): neither response was preferred.

With `exclude_unsafe`, pairs that any annotator flagged unsafe are left out of both.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridle.label.candidates import CHOICES

FORMATS = ("preferences", "verdicts")
WINNER = {"a": "A", "b": "B", "tie": "tie", "both_bad": "tie", "split": "tie"}
OUTCOME = {"A": 1.0, "B": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class Tally:
    """The votes on one pair and its label under the rule above."""

    pair: dict[str, Any]          # the pairs row, JSON fields decoded
    counts: dict[str, int]        # a, b, tie, both_bad
    unsafe: int
    comments: list[str]

    @property
    def votes(self) -> int:
        return sum(self.counts.values())

    @property
    def label(self) -> str:
        return majority(self.counts)

    @property
    def agreement(self) -> float:
        """The share of votes that agree with the label (top count / votes)."""
        return max(self.counts.values()) / self.votes if self.votes else 0.0


@dataclass
class Summary:
    rows: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    too_few_votes: int = 0
    unsafe_left_out: int = 0
    gold_pairs: int = 0
    win_rates: list[dict[str, Any]] = field(default_factory=list)

    def text(self, out: str, fmt: str) -> str:
        kinds = ", ".join(f"{n} {label}" for label, n in sorted(self.labels.items()))
        lines = [f"wrote {self.rows} {fmt} rows to {out} (labels: {kinds or 'none'}; {self.too_few_votes} pairs with "
                 f"too few votes, {self.unsafe_left_out} flagged unsafe left out, {self.gold_pairs} gold pairs not "
                 "exported)"]
        for w in self.win_rates:
            lines.append(f"human win rate {w['model_a']} vs {w['model_b']}: {100 * w['win_rate']:.1f}% "
                         f"(95% CI {100 * w['interval'][0]:.1f}-{100 * w['interval'][1]:.1f}, {w['wins']} wins, "
                         f"{w['ties']} ties, {w['losses']} losses over {w['n']} prompts)")
        return "\n".join(lines)


def majority(counts: dict[str, int]) -> str:
    """The choice with strictly more votes than every other, else "split"."""
    top = max(counts.values(), default=0)
    leaders = [c for c in CHOICES if counts.get(c, 0) == top]
    return leaders[0] if top > 0 and len(leaders) == 1 else "split"


def tallies(conn: sqlite3.Connection) -> list[Tally]:
    """Every pair with its votes, in pair order (gold pairs included; callers leave them out)."""
    pairs = {row["id"]: dict(row) for row in conn.execute("SELECT * FROM pairs ORDER BY id")}
    for pair in pairs.values():
        for name in ("prompt", "response_a", "response_b"):
            pair[name] = json.loads(pair[name])
    counts: dict[int, Counter[str]] = {pid: Counter() for pid in pairs}
    unsafe: Counter[int] = Counter()
    comments: dict[int, list[str]] = {pid: [] for pid in pairs}
    for vote in conn.execute("SELECT pair_id, choice, unsafe, comment FROM votes ORDER BY id"):
        counts[vote["pair_id"]][vote["choice"]] += 1
        unsafe[vote["pair_id"]] += vote["unsafe"]
        if vote["comment"].strip():
            comments[vote["pair_id"]].append(vote["comment"])
    return [Tally(pair, {c: counts[pid][c] for c in CHOICES}, unsafe[pid], comments[pid])
            for pid, pair in pairs.items()]


def preference_row(t: Tally) -> dict[str, Any]:
    """A row `bridle rm` and `bridle dpo` read as it is (prompt, chosen, rejected), plus the evidence."""
    p = t.pair
    a_won = t.label == "a"
    row = {"prompt": p["prompt"], "chosen": p["response_a"] if a_won else p["response_b"],
           "rejected": p["response_b"] if a_won else p["response_a"], "votes": t.counts, "n_votes": t.votes,
           "agreement": round(t.agreement, 4), "unsafe_flags": t.unsafe, "comments": t.comments,
           "pair_id": p["id"], "source": p["source"], "source_row": p["source_row"]}
    if p["model_a"] or p["model_b"]:
        row["chosen_model"], row["rejected_model"] = ((p["model_a"], p["model_b"]) if a_won
                                                      else (p["model_b"], p["model_a"]))
    return row


def verdict_row(t: Tally) -> dict[str, Any]:
    """One human verdict in `bridle eval`'s verdicts.jsonl terms: winner A = model_a (response_a)."""
    p = t.pair
    winner = WINNER[t.label]
    return {"prompt_index": p["prompt_index"], "prompt": p["prompt"], "model_a": p["model_a"],
            "model_b": p["model_b"], "winner": winner,
            "winner_model": {"A": p["model_a"], "B": p["model_b"]}.get(winner, "tie"), "outcome": OUTCOME[winner],
            "label": t.label, "votes": t.counts, "n_votes": t.votes, "agreement": round(t.agreement, 4),
            "judge": "human", "pair_id": p["id"]}


def human_win_rates(verdicts: Sequence[dict[str, Any]], *, order: Sequence[tuple[str, str]] = (),
                    resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Per pair of named models, model_a's human win rate, ties counting half (`bridle.eval.winrate.win_rate`, the
    number `bridle eval` reports for its judge). A pair listed in `order` as (a, b) is reported that way round (as
    `bridle eval` lists its pairs); any other is reported in alphabetical order."""
    from bridle.eval.winrate import win_rate

    oriented = {frozenset(p): tuple(p) for p in order}
    outcomes: dict[tuple[str, str], list[float]] = {}
    for v in verdicts:
        if not v["model_a"] or not v["model_b"] or v["model_a"] == v["model_b"]:
            continue
        names = (v["model_a"], v["model_b"])
        first, second = oriented.get(frozenset(names), tuple(sorted(names)))
        outcome = v["outcome"] if v["model_a"] == first else 1.0 - v["outcome"]
        outcomes.setdefault((first, second), []).append(outcome)
    out = []
    for (a, b), ys in sorted(outcomes.items()):
        w = win_rate(ys, resamples=resamples, seed=seed)
        out.append({"model_a": a, "model_b": b, "win_rate": w.win_rate, "interval": list(w.interval),
                    "wins": w.wins, "ties": w.ties, "losses": w.losses, "n": w.n})
    return out


def export(conn: sqlite3.Connection, out: str | Path, *, fmt: str = "preferences", min_votes: int | None = None,
           exclude_unsafe: bool = False) -> Summary:
    """Write the export file (replaced whole: written beside, then renamed) and return what went into it."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if min_votes is None:
        k = conn.execute("SELECT value FROM meta WHERE key = 'votes_per_pair'").fetchone()
        min_votes = int(k[0]) if k else 1
    summary = Summary()
    rows, verdicts = [], []
    for t in tallies(conn):
        if t.pair["gold"] is not None:
            summary.gold_pairs += 1
            continue
        if t.votes < max(min_votes, 1):
            summary.too_few_votes += 1
            continue
        if exclude_unsafe and t.unsafe:
            summary.unsafe_left_out += 1
            continue
        summary.labels[t.label] += 1
        verdicts.append(verdict_row(t))
        if fmt == "preferences" and t.label in ("a", "b"):
            rows.append(preference_row(t))
    if fmt == "verdicts":
        rows = verdicts
    summary.win_rates = human_win_rates(verdicts)
    summary.rows = len(rows)
    write_jsonl(Path(out), rows)
    return summary


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
