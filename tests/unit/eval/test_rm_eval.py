"""Reward-model evaluation numbers on hand-made pairs."""

from __future__ import annotations

import math

import pytest

from bridle.eval.rm import bootstrap_ci, calibration_error, evaluate_pairs, pair_outcomes


def test_pair_outcomes_count_ties_as_half():
    assert pair_outcomes([2.0, 0.0, 1.0], [1.0, 1.0, 1.0]) == [1.0, 0.0, 0.5]


def test_bootstrap_interval_contains_the_point_estimate_and_is_reproducible():
    values = [1.0] * 70 + [0.0] * 30
    low, high = bootstrap_ci(values, resamples=1000, seed=0)
    assert low < 0.7 < high and 0.55 < low and high < 0.85
    assert bootstrap_ci(values, resamples=1000, seed=0) == (low, high)


def test_length_baseline_and_split_on_hand_made_pairs():
    # pair:        1     2     3     4
    # chosen len:  10    3     5     8
    # rejected:    4     9     5     2      → prefer-longer: 1, 0, 0.5, 1 → 0.625
    # RM right?:   yes   yes   no    yes    → accuracy 0.75
    chosen, rejected = [1.0, 2.0, 0.0, 3.0], [0.0, 1.0, 1.0, 0.0]
    report = evaluate_pairs(chosen, rejected, [10, 3, 5, 8], [4, 9, 5, 2], resamples=200)
    assert report["accuracy"] == 0.75 and report["baselines"] == {"chance": 0.5, "prefer_longer": 0.625}
    by = report["accuracy_by_length"]
    assert by["chosen longer"] == {"pairs": 2, "accuracy": 1.0}
    assert by["chosen shorter"] == {"pairs": 1, "accuracy": 1.0}
    assert by["equal length"] == {"pairs": 1, "accuracy": 0.0}
    # agreement with prefer-longer over the 3 pairs of unequal length: 1 and 4 agree, 2 (RM picks shorter) not
    assert report["agreement_pairs"] == 3 and report["agreement_with_prefer_longer"] == pytest.approx(2 / 3)
    assert report["accuracy_ci95"][0] <= 0.75 <= report["accuracy_ci95"][1]


def test_a_length_only_reward_model_agrees_fully_with_prefer_longer():
    chosen_len, rejected_len = [5, 9, 2, 7], [8, 3, 6, 1]
    report = evaluate_pairs([float(n) for n in chosen_len], [float(n) for n in rejected_len], chosen_len,
                            rejected_len, resamples=100)
    assert report["agreement_with_prefer_longer"] == 1.0
    assert report["accuracy"] == report["baselines"]["prefer_longer"]


def test_calibration_error_by_hand():
    # one pair with r_c − r_r = 0: p = 0.5 → predictions (0.5, 1) and (0.5, 0); bin 5 mean p 0.5, outcomes 0.5 → 0
    assert calibration_error([0.0], [0.0]) == pytest.approx(0.0)
    # two pairs with r_c − r_r = ln 3: p = 0.75, both right → (0.75, 1) x2 in bin 7 and (0.25, 0) x2 in bin 2
    # each bin: |0.75 − 1| = 0.25 and |0.25 − 0| = 0.25 → ECE 0.25 (overconfident would be worse, under here)
    assert calibration_error([math.log(3)] * 2, [0.0] * 2) == pytest.approx(0.25)
