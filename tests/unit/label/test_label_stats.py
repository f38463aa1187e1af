"""The admin figures: per-annotator counts, gold accuracy, Fleiss' and Cohen's kappa, left-side share."""

from __future__ import annotations

import pytest
from label_helpers import cast, simple_pairs

from bridle.label.assign import Rules
from bridle.label.stats import labelling_stats


def test_stats_by_hand(make_db):
    _, conn = make_db(simple_pairs(3), simple_pairs(1, gold="a", start=3), k=2)
    # p0 and p1 on pairs 1-3: (a, a), (b, a), (tie, tie); gold pair 4 (answer a): p0 a (right), p1 b (wrong).
    cast(conn, {1: ["a", "a"], 2: ["b", "a"], 3: ["tie", "tie"], 4: ["a", "b"]})
    stats = labelling_stats(conn, Rules(votes_per_pair=2, gold_rate=0.1))
    people = {a["name"]: a for a in stats["annotators"]}
    assert (people["p0"]["votes"], people["p0"]["gold_votes"], people["p0"]["gold_accuracy"]) == (4, 1, 1.0)
    assert people["p1"]["gold_accuracy"] == 0.0
    assert (stats["pairs"], stats["gold_pairs"], stats["complete_pairs"], stats["votes"]) == (3, 1, 3, 8)
    # Fleiss over [a a], [a b], [tie tie]: P_i = 1, 0, 1 → P̄ = 2/3; p = (3/6, 1/6, 2/6, 0) → P̄_e = 14/36;
    # κ = (24/36 − 14/36) / (22/36) = 5/11.
    assert stats["fleiss"]["kappa"] == pytest.approx(5 / 11) and stats["fleiss"]["items"] == 3
    # Cohen p0 (a, b, tie) vs p1 (a, a, tie): p_o = 2/3, p_e = (1/3)(2/3) + (1/3)(1/3) = 1/3 → κ = 1/2.
    [pair] = stats["cohen"]["pairs"]
    assert (pair["a"], pair["b"], pair["shared"]) == ("p0", "p1", 3)
    assert pair["kappa"] == pytest.approx(0.5) and stats["cohen"]["mean"] == pytest.approx(0.5)
    # Sides unswapped, so a = left, b = right: of the 6 side votes (pairs 1, 2 and gold) 4 were "left".
    assert stats["left_share"] == pytest.approx(4 / 6)


def test_fleiss_uses_only_pairs_with_exactly_k_votes(make_db):
    _, conn = make_db(simple_pairs(3), k=2)
    cast(conn, {1: ["a", "a"], 2: ["b"], 3: ["b", "b"]})
    fleiss = labelling_stats(conn, Rules(votes_per_pair=2))["fleiss"]
    assert fleiss["items"] == 2 and fleiss["kappa"] == pytest.approx(1.0)
