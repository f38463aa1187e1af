"""Active selection: the pairs the reward model is least sure about are served first."""

from __future__ import annotations

import math

import pytest
from label_helpers import simple_pairs, write_jsonl

from bridle.label import active, db
from bridle.label.assign import Rules, next_pair, record_vote
from bridle.label.candidates import Pair
from bridle.label.server import prepare


def test_uncertainty_is_distance_of_bradley_terry_probability_from_a_half():
    assert active.uncertainty(1.0, 1.0) == 0.0
    assert active.uncertainty(2.0, 0.0) == pytest.approx(1 / (1 + math.exp(-2)) - 0.5)
    assert active.uncertainty(0.0, 2.0) == pytest.approx(active.uncertainty(2.0, 0.0))
    assert active.uncertainty(800.0, 0.0) == pytest.approx(0.5)  # no overflow


def fake_scores(prompts, responses):
    """Reward = the number at the end of the response."""
    return [float(r.split()[-1]) for r in responses]


def test_prioritize_serves_the_closest_calls_first(make_db):
    gaps = [3.0, 0.1, 5.0, 1.0]  # reward differences per pair
    pairs = [Pair(f"q{i}", f"a {g}", "b 0", "c.jsonl", i + 1) for i, g in enumerate(gaps)]
    _, conn = make_db(pairs, simple_pairs(1, gold="a", start=9), k=1)
    assert active.prioritize(conn, fake_scores) == 4  # gold pairs are not ranked
    who = db.annotator_by_token(conn, db.add_annotator(conn, "u")).id
    order = []
    while (shown := next_pair(conn, who, Rules(votes_per_pair=1, gold_rate=0.0))) is not None:
        order.append(shown.pair_id)
        record_vote(conn, who, shown.pair_id, "tie", f"key-{shown.pair_id:05d}")
    assert order == [2, 4, 1, 3]  # |Δ| = 0.1, 1, 3, 5


def test_serve_reward_model_flag_reaches_prioritize(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "q", "response_a": "x 1", "response_b": "y 4"},
                                              {"prompt": "r", "response_a": "x 2", "response_b": "y 2"}])
    asked = []

    def scorer(path):
        asked.append(path)
        return fake_scores

    monkeypatch.setattr(active, "reward_model_scorer", scorer)
    lines = prepare(tmp_path / "l.sqlite", data=[str(data)], reward_model="runs/rm/model")
    assert asked == ["runs/rm/model"] and any("active selection: 2 pairs" in line for line in lines)
    conn = db.open_db(tmp_path / "l.sqlite")
    priorities = [r[0] for r in conn.execute("SELECT priority FROM pairs ORDER BY id")]
    assert priorities[1] == 0.0 and priorities[0] > 0.4
