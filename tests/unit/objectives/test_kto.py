"""KTO against hand-computed values and TRL's KTOTrainer formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bridle.objectives import kto


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_kto_matches_hand_computed_values():
    # r = π − π_ref = [2, −1, 1] with labels [good, bad, good]; KL twins: π − π_ref = [0.5, 1.5] → z0 = 1.0
    # β = 0.5, λ_D = 1, λ_U = 2:
    #   good r=2:  1 − σ(0.5·(2 − 1))   = 1 − σ(0.5)  = 0.377541
    #   bad r=−1:  2·(1 − σ(0.5·(1 + 1))) = 2·(1 − σ(1)) = 2·0.268941 = 0.537883
    #   good r=1:  1 − σ(0)             = 0.5
    # mean = (0.377541 + 0.537883 + 0.5) / 3 = 0.471808
    policy, ref = torch.tensor([-3.0, -6.0, -4.0]), torch.tensor([-5.0, -5.0, -5.0])
    labels = torch.tensor([True, False, True])
    loss, m = kto(policy, ref, labels, torch.tensor([-1.5, -0.5]), torch.tensor([-2.0, -2.0]), beta=0.5,
                  desirable_weight=1.0, undesirable_weight=2.0)
    assert loss.item() == pytest.approx(0.471808, abs=1e-5)
    assert m["kl"].item() == pytest.approx(1.0)
    assert m["reward/chosen"].item() == pytest.approx(0.75)  # β·mean(2, 1)
    assert m["reward/rejected"].item() == pytest.approx(-0.5)
    assert m["reward/accuracy"].item() == pytest.approx(1.0)


def test_kto_averages_the_kl_twins_with_the_mean_it_is_given():
    # the same rows as above, the KL twins' log-ratios [0.5, 1.5] averaged with other processes' ones (here a
    # stand-in that adds a third ratio, 4.0): z0 = (0.5 + 1.5 + 4.0) / 3 = 2.0, not 1.0
    #   good r=2:  1 − σ(0.5·(2 − 2)) = 0.5;  bad r=−1: 2·(1 − σ(0.5·(2 + 1))) = 2·(1 − σ(1.5)) = 0.364851
    #   good r=1:  1 − σ(0.5·(1 − 2)) = 1 − σ(−0.5) = 0.622459;  mean = 0.495770
    policy, ref = torch.tensor([-3.0, -6.0, -4.0]), torch.tensor([-5.0, -5.0, -5.0])
    labels = torch.tensor([True, False, True])
    seen = []

    def with_another_process(ratios):
        seen.append(ratios.tolist())
        return torch.cat([ratios, torch.tensor([4.0])]).mean()

    loss, m = kto(policy, ref, labels, torch.tensor([-1.5, -0.5]), torch.tensor([-2.0, -2.0]), beta=0.5,
                  desirable_weight=1.0, undesirable_weight=2.0, kl_mean=with_another_process)
    assert seen == [[0.5, 1.5]]
    assert loss.item() == pytest.approx(0.495770, abs=1e-5)
    assert m["kl"].item() == pytest.approx(2.0)


def test_kto_reference_point_is_clamped_at_zero_and_detached():
    policy = torch.tensor([-3.0, -6.0], requires_grad=True)
    kl_policy = torch.tensor([-9.0, -9.0], requires_grad=True)  # KL estimate −7 → z0 = 0
    loss, m = kto(policy, torch.tensor([-5.0, -5.0]), torch.tensor([True, False]), kl_policy,
                  torch.tensor([-2.0, -2.0]), beta=0.5)
    assert m["kl"].item() == 0.0
    loss.backward()
    assert kl_policy.grad is None and policy.grad is not None


def test_kto_matches_trl_kto_trainer_formula():
    # trl/trainer/kto_trainer.py (TRL 1.16, lines 1443-1482, loss_type "kto"), reproduced: the loss lives inside
    # `_compute_loss` with a forward pass, so it cannot be called alone.
    torch.manual_seed(0)
    policy, ref = torch.randn(6) * 3 - 20, torch.randn(6) * 3 - 20
    labels = torch.tensor([True, True, False, True, False, False])
    kl_p, kl_r = torch.randn(6) - 20, torch.randn(6) - 21
    beta, w_d, w_u = 0.2, 1.0, 1.5
    kl = (kl_p - kl_r).mean().detach().clamp(min=0)
    chosen_losses = 1 - F.sigmoid(beta * ((policy - ref)[labels] - kl))
    rejected_losses = 1 - F.sigmoid(beta * (kl - (policy - ref)[~labels]))
    trl_loss = torch.cat((w_d * chosen_losses, w_u * rejected_losses), 0).nanmean()
    loss, _ = kto(policy, ref, labels, kl_p, kl_r, beta=beta, desirable_weight=w_d, undesirable_weight=w_u)
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)
