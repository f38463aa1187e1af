"""What the admin page shows: progress, per-annotator counts, gold accuracy, agreement (Fleiss' and Cohen's kappa)
and the position bias of clicks."""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections import Counter, defaultdict
from typing import Any

from bridle.label.agreement import count_table, fleiss_kappa
from bridle.label.assign import Rules
from bridle.label.candidates import CHOICES

MIN_SHARED = 2  # annotator pairs need this many pairs voted on by both for a Cohen's kappa


def labelling_stats(conn: sqlite3.Connection, rules: Rules) -> dict[str, Any]:
    """A JSON-ready summary of the database (NaN becomes None)."""
    k = rules.votes_per_pair
    votes = [dict(r) for r in conn.execute(
        "SELECT v.annotator_id, a.name, v.pair_id, v.choice, v.shown_choice, v.unsafe, v.created, p.gold "
        "FROM votes v JOIN annotators a ON a.id = v.annotator_id JOIN pairs p ON p.id = v.pair_id ORDER BY v.id")]
    pairs, gold_pairs = conn.execute("SELECT COALESCE(SUM(gold IS NULL), 0), COALESCE(SUM(gold IS NOT NULL), 0) "
                                     "FROM pairs").fetchone()
    regular = [v for v in votes if v["gold"] is None]
    per_pair: dict[int, list[str]] = defaultdict(list)
    per_person: dict[str, dict[int, str]] = defaultdict(dict)
    for v in regular:
        per_pair[v["pair_id"]].append(v["choice"])
        per_person[v["name"]][v["pair_id"]] = v["choice"]
    return {
        "votes_per_pair": k, "gold_rate": rules.gold_rate, "pairs": pairs, "gold_pairs": gold_pairs,
        "votes": len(votes), "regular_votes": len(regular),
        "complete_pairs": sum(len(c) >= k for c in per_pair.values()),
        "needed_votes": pairs * k, "counted_votes": sum(min(len(c), k) for c in per_pair.values()),
        "annotators": _annotators(conn, votes),
        "fleiss": _fleiss(per_pair, k),
        "cohen": _cohen(per_person),
        "left_share": _left_share(votes),
    }


def _annotators(conn: sqlite3.Connection, votes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = {r["name"]: {"name": r["name"], "admin": bool(r["admin"]), "votes": 0, "gold_votes": 0,
                        "gold_correct": 0, "gold_accuracy": None, "unsafe_flags": 0, "last_vote": None}
            for r in conn.execute("SELECT name, admin FROM annotators ORDER BY name")}
    for v in votes:
        row = rows[v["name"]]
        row["votes"] += 1
        row["unsafe_flags"] += v["unsafe"]
        row["last_vote"] = v["created"]
        if v["gold"] is not None:
            row["gold_votes"] += 1
            row["gold_correct"] += v["choice"] == v["gold"]
    for row in rows.values():
        if row["gold_votes"]:
            row["gold_accuracy"] = row["gold_correct"] / row["gold_votes"]
    return list(rows.values())


def _fleiss(per_pair: dict[int, list[str]], k: int) -> dict[str, Any]:
    """Fleiss' kappa over the pairs with exactly k votes (Fleiss needs the same number of votes per item)."""
    items = [c for c in per_pair.values() if len(c) == k]
    if k < 2 or not items:
        return {"kappa": None, "items": len(items), "raters": k}
    result = fleiss_kappa(count_table(items, CHOICES))
    return {"kappa": _finite(result.kappa), "observed": _finite(result.observed),
            "expected": _finite(result.expected), "items": result.items, "raters": result.raters}


def _cohen(per_person: dict[str, dict[int, str]]) -> dict[str, Any]:
    """Cohen's kappa of every two annotators over the pairs both voted on (MIN_SHARED or more), and their mean."""
    from bridle.eval.agreement import cohen_kappa

    table = []
    for a, b in itertools.combinations(sorted(per_person), 2):
        shared = sorted(per_person[a].keys() & per_person[b].keys())
        if len(shared) < MIN_SHARED:
            continue
        result = cohen_kappa([per_person[a][p] for p in shared], [per_person[b][p] for p in shared], CHOICES,
                             resamples=0)
        table.append({"a": a, "b": b, "shared": len(shared), "kappa": _finite(result.kappa),
                      "accuracy": _finite(result.accuracy)})
    kappas = [row["kappa"] for row in table if row["kappa"] is not None]
    return {"pairs": table, "mean": sum(kappas) / len(kappas) if kappas else None}


def _left_share(votes: list[dict[str, Any]]) -> float | None:
    """Of the votes for one side, the share that chose the left one: 0.5 is no position bias."""
    sides = Counter(v["shown_choice"] for v in votes if v["shown_choice"] in ("left", "right"))
    total = sides["left"] + sides["right"]
    return sides["left"] / total if total else None


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)
