"""Active selection: serve first the pairs the current reward model is least sure about.

A reward model gives each response a score r; the Bradley-Terry probability that A beats B is σ(r_A − r_B). The
pairs whose probability is nearest ½ are the ones a human label teaches the most, so each pair's priority is
|σ(r_A − r_B) − ½| and smaller is served first (`bridle.label.assign`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from bridle.data.chat import Prompt
from bridle.label.db import transaction

Scorer = Callable[[Sequence[Prompt], Sequence[Prompt]], Sequence[float]]


def uncertainty(reward_a: float, reward_b: float) -> float:
    """|P(A ≻ B) − ½| with P = σ(r_A − r_B): 0 is a coin flip, ½ is certainty."""
    margin = reward_a - reward_b
    p = 1.0 / (1.0 + math.exp(-margin)) if margin >= 0 else math.exp(margin) / (1.0 + math.exp(margin))
    return abs(p - 0.5)


def prioritize(conn: sqlite3.Connection, score: Scorer) -> int:
    """Score both responses of every regular pair and store each pair's uncertainty as its priority; returns the
    number of pairs scored."""
    rows = conn.execute("SELECT id, prompt, response_a, response_b FROM pairs WHERE gold IS NULL "
                        "ORDER BY id").fetchall()
    if not rows:
        return 0
    prompts = [json.loads(r["prompt"]) for r in rows]
    responses = [json.loads(r["response_a"]) for r in rows] + [json.loads(r["response_b"]) for r in rows]
    scores = list(score(prompts + prompts, responses))
    n = len(rows)
    with transaction(conn):
        conn.executemany("UPDATE pairs SET priority = ? WHERE id = ?",
                         [(uncertainty(scores[i], scores[n + i]), rows[i]["id"]) for i in range(n)])
    return n


def reward_model_scorer(path: str | Path) -> Scorer:
    """The scores of a `bridle rm` output dir (or any 1-label classifier dir)."""
    from bridle.feedback.reward_model import RewardModel

    model = RewardModel.load(path)
    return lambda prompts, responses: model.score(list(prompts), list(responses))
