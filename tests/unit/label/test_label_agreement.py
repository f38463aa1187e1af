"""Fleiss' kappa against a hand computation and the textbook worked example."""

from __future__ import annotations

import math

import pytest

from bridle.label.agreement import count_table, fleiss_kappa

# The worked example of Wikipedia's "Fleiss' kappa" article: 10 items, 14 raters, 5 categories.
# Published: P̄ = 0.378, P̄_e = 0.213, κ = 0.210.
WORKED = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1], [7, 7, 0, 0, 0],
          [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_matches_the_worked_example():
    result = fleiss_kappa(WORKED)
    assert result.observed == pytest.approx(0.378, abs=5e-4)
    assert result.expected == pytest.approx(0.213, abs=5e-4)
    assert result.kappa == pytest.approx(0.210, abs=5e-4)
    assert (result.items, result.raters) == (10, 14)


def test_fleiss_kappa_by_hand():
    # 3 items, 3 raters, 2 categories: [3,0], [2,1], [0,3].
    # P_i = (Σ n_ij² − 3) / 6 → 1, (4 + 1 − 3)/6 = 1/3, 1;  P̄ = 7/9.
    # p = (5/9, 4/9);  P̄_e = 25/81 + 16/81 = 41/81;  κ = (63/81 − 41/81) / (40/81) = 22/40 = 0.55.
    result = fleiss_kappa(count_table([["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"]], ["a", "b"]))
    assert result.observed == pytest.approx(7 / 9)
    assert result.expected == pytest.approx(41 / 81)
    assert result.kappa == pytest.approx(0.55)


def test_fleiss_kappa_is_one_for_perfect_agreement_and_nan_without_variety():
    assert fleiss_kappa([[2, 0], [0, 2]]).kappa == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa([[2, 0], [2, 0]]).kappa)
    assert math.isnan(fleiss_kappa(count_table([], ["a"])).kappa)


def test_fleiss_kappa_refuses_unequal_rater_counts():
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([[2, 0], [1, 2]])
