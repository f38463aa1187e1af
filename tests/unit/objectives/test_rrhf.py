"""RRHF against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from bridle.objectives import rrhf


def test_rrhf_matches_hand_computed_values():
    # one prompt, 3 responses: summed logps [−4, −3, −6], lengths [2, 3, 2] → p = [−2, −1, −3]; scores [3, 1, 2]
    # ordered pairs r_i < r_j: (1 < 2): p_1 − p_2 = −1 − (−3) = 2 → 2;  (1 < 0): −1 − (−2) = 1 → 1;
    #                          (2 < 0): −3 − (−2) = −1 → 0.        L_rank = 3
    # best = response 0: L_ft = −(−4)/2 = 2.  L = 3 + 0.5·2 = 4
    logps, lengths = torch.tensor([[-4.0, -3.0, -6.0]]), torch.tensor([[2.0, 3.0, 2.0]])
    loss, m = rrhf(logps, lengths, torch.tensor([[3.0, 1.0, 2.0]]), torch.ones(1, 3, dtype=torch.bool),
                   sft_weight=0.5)
    assert loss.item() == pytest.approx(4.0)
    assert m["rank_loss"].item() == pytest.approx(3.0)
    assert m["reward/chosen"].item() == pytest.approx(-2.0)
    assert m["reward/accuracy"].item() == pytest.approx(1 / 3)  # only (2 < 0) is ranked right


def test_rrhf_ignores_padding_slots_of_prompts_with_fewer_responses():
    # prompt 2 has only 2 responses; its third slot holds junk that must not count
    logps = torch.tensor([[-2.0, -4.0, 0.0], [-1.0, -3.0, 100.0]])
    lengths = torch.ones(2, 3)
    scores = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 9.0]])
    valid = torch.tensor([[True, True, False], [True, True, False]])
    # prompt 1: right order, rank 0, ft 2.  prompt 2: r_0 < r_1 but p_0 = −1 > p_1 = −3 → 2; ft 3.  mean (2 + 5)/2
    loss, _ = rrhf(logps, lengths, scores, valid)
    assert loss.item() == pytest.approx(3.5)
