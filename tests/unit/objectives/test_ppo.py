"""PPO policy and value losses and GRPO against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bridle.objectives import grpo, ppo_policy, ppo_value

# One sequence of 4 response tokens and a padded 5th (ρ = 50 there, which must not count). old log-probs 0, so
# ρ = exp(logp). ε = 0.2 → clip range [0.8, 1.2].
#   t0: ρ = 1.5, A = +1: min(1.5, 1.2) = 1.2       → loss −1.2, clipped term active
#   t1: ρ = 0.5, A = +1: min(0.5, 0.8) = 0.5       → loss −0.5, not clipped (ρ low, but A > 0)
#   t2: ρ = 0.5, A = −1: min(−0.5, −0.8) = −0.8    → loss +0.8, clipped term active
#   t3: ρ = 1.5, A = −1: min(−1.5, −1.2) = −1.5    → loss +1.5, not clipped (ρ high, but A < 0)
# token mean: (−1.2 − 0.5 + 0.8 + 1.5)/4 = 0.15; clipfrac 2/4 = 0.5
RATIOS = torch.tensor([[1.5, 0.5, 0.5, 1.5, 50.0]])
ADV = torch.tensor([[1.0, 1.0, -1.0, -1.0, 3.0]])
MASK = torch.tensor([[1, 1, 1, 1, 0]])
OLD = torch.zeros(1, 5)


def test_ppo_policy_matches_hand_computed_loss_and_clipfrac():
    loss, m = ppo_policy(RATIOS.log(), OLD, ADV, MASK, clip_eps=0.2)
    assert loss.item() == pytest.approx(0.15, abs=1e-6)
    assert m["policy/clipfrac"].item() == pytest.approx(0.5)
    assert m["policy/ratio"].item() == pytest.approx(1.0)  # (1.5 + 0.5 + 0.5 + 1.5)/4
    # ½·mean((log ρ)²): log 1.5 = 0.405465, log 0.5 = −0.693147; ½·(2·0.164402 + 2·0.480453)/4 = 0.161214
    assert m["policy/approx_kl"].item() == pytest.approx(0.161214, abs=1e-6)


def test_ppo_policy_gradient_is_zero_on_clipped_tokens():
    logps = RATIOS.log().requires_grad_()
    loss, _ = ppo_policy(logps, OLD, ADV, MASK)
    loss.backward()
    # d(−ρA/4)/d logp = −ρA/4: t1 −0.5·1/4 = −0.125, t3 −1.5·(−1)/4 = 0.375; t0, t2 clipped; t4 padding
    torch.testing.assert_close(logps.grad, torch.tensor([[0.0, -0.125, 0.0, 0.375, 0.0]]))


def test_ppo_policy_clip_eps_high_widens_only_the_upper_side():
    # ε_high = 0.6 → range [0.8, 1.6]: t0 (ρ = 1.5, A = +1) is no longer clipped → −1.5; t2 still clipped at 0.8
    # (−1.5 − 0.5 + 0.8 + 1.5)/4 = 0.075; clipfrac 1/4
    loss, m = ppo_policy(RATIOS.log(), OLD, ADV, MASK, clip_eps=0.2, clip_eps_high=0.6)
    assert loss.item() == pytest.approx(0.075, abs=1e-6)
    assert m["policy/clipfrac"].item() == pytest.approx(0.25)


def test_token_and_sequence_aggregation_weigh_sequences_differently():
    # ρ = 1 everywhere, so the per-token loss is −A. Row 0: 3 tokens, A = 1 → −1 each; row 1: 1 token, A = 4 → −4
    # token: (−1 −1 −1 −4)/4 = −1.75;  sequence: mean(−1, −4) = −2.5
    logps = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    per_sequence = torch.tensor([1.0, 4.0])
    for adv in (per_sequence, per_sequence[:, None], per_sequence[:, None].expand(2, 3)):  # (B,), (B, 1), (B, T)
        token, _ = ppo_policy(logps, logps, adv, mask, aggregation="token")
        sequence, _ = ppo_policy(logps, logps, adv, mask, aggregation="sequence")
        assert token.item() == pytest.approx(-1.75)
        assert sequence.item() == pytest.approx(-2.5)
    with pytest.raises(ValueError, match="token, sequence"):
        ppo_policy(logps, logps, per_sequence, mask, aggregation="batch")


def test_ppo_value_matches_hand_computed_clipped_loss():
    # V_old = 0, ε = 0.2 → clip(V) ∈ [−0.2, 0.2]
    #   t0: V = 0.5, R = 1:  (0.5 − 1)² = 0.25, (0.2 − 1)² = 0.64  → max 0.64 (clipped error larger: counts)
    #   t1: V = 0.1, R = 0:  0.01, 0.01                             → 0.01
    #   t2: V = −0.5, R = 0: 0.25, (−0.2)² = 0.04                   → 0.25
    #   t3: padding (V = 7, R = −7) ignored
    # loss ½·(0.64 + 0.01 + 0.25)/3 = 0.15; clipfrac 1/3; value/mean 0.1/3; value/error (0.25 + 0.01 + 0.25)/3 = 0.17
    values = torch.tensor([[0.5, 0.1, -0.5, 7.0]])
    returns = torch.tensor([[1.0, 0.0, 0.0, -7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, m = ppo_value(values, torch.zeros(1, 4), returns, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(0.15, abs=1e-6)
    assert m["value/clipfrac"].item() == pytest.approx(1 / 3)
    assert m["value/mean"].item() == pytest.approx(0.1 / 3, abs=1e-6)
    assert m["value/error"].item() == pytest.approx(0.17, abs=1e-6)


# GRPO: ρ = 1 (logp = old). Row 0: 2 tokens, A = +1, log π − log π_ref = [0, 1]; row 1: 1 token (+ padding), A = −1,
# log π − log π_ref = −1.  k3 = e^{−x} + x − 1: [0, 0.367879] and 0.718282.
GRPO_LOGPS = torch.tensor([[-1.0, -1.0], [-2.0, 0.0]])
GRPO_REF = torch.tensor([[-1.0, -2.0], [-1.0, 0.0]])
GRPO_ADV = torch.tensor([1.0, -1.0])
GRPO_MASK = torch.tensor([[1, 1], [1, 0]])


def test_grpo_adds_the_k3_penalty_and_averages_per_sequence():
    # β = 0.1, per token −A + β·k3: row 0 [−1, −1 + 0.0367879] → mean −0.981606; row 1 [1 + 0.0718282] = 1.071828
    # sequence: (−0.981606 + 1.071828)/2 = 0.045111; token: (−1 − 0.963212 + 1.071828)/3 = −0.297128
    # kl/ref: (0 + 0.367879 + 0.718282)/3 = 0.362054
    loss, m = grpo(GRPO_LOGPS, GRPO_LOGPS, GRPO_REF, GRPO_ADV, GRPO_MASK, beta=0.1)
    assert loss.item() == pytest.approx(0.045111, abs=1e-6)
    assert m["kl/ref"].item() == pytest.approx(0.362054, abs=1e-6)
    assert m["policy/ratio"].item() == pytest.approx(1.0)
    token, _ = grpo(GRPO_LOGPS, GRPO_LOGPS, GRPO_REF, GRPO_ADV, GRPO_MASK, beta=0.1, aggregation="token")
    assert token.item() == pytest.approx(-0.297128, abs=1e-6)


def test_grpo_kl_gradient_pulls_toward_the_reference():
    # d(β·k3)/d logp = β·(1 − exp(ref − logp)); row 0 token 1: 0.1·(1 − e⁻¹) = 0.0632121, halved by the row's mean
    logps = GRPO_LOGPS.clone().requires_grad_()
    loss, _ = grpo(logps, GRPO_LOGPS, GRPO_REF, torch.zeros(2), GRPO_MASK, beta=0.1)
    loss.backward()
    assert logps.grad[0, 1].item() == pytest.approx(0.1 * (1 - math.exp(-1)) / 2 / 2, abs=1e-6)  # /2 tokens, /2 rows


def test_grpo_without_reference_or_beta_is_ppo_policy_with_sequence_aggregation():
    logps = RATIOS.log()
    plain, plain_metrics = ppo_policy(logps, OLD, ADV, MASK, aggregation="sequence")
    no_ref, no_ref_metrics = grpo(logps, OLD, None, ADV, MASK)
    beta0, beta0_metrics = grpo(logps, OLD, torch.zeros(1, 5), ADV, MASK, beta=0.0)
    assert no_ref.item() == pytest.approx(plain.item()) and beta0.item() == pytest.approx(plain.item())
    assert "kl/ref" not in no_ref_metrics and "kl/ref" in beta0_metrics
    assert no_ref_metrics["policy/clipfrac"].item() == plain_metrics["policy/clipfrac"].item() == 0.5


def test_metrics_are_detached():
    logps = RATIOS.log().requires_grad_()
    _, m = grpo(logps, OLD, torch.zeros(1, 5), ADV, MASK)
    assert not any(v.requires_grad for v in m.values())
    _, m = ppo_value(torch.ones(1, 5, requires_grad=True), OLD, OLD, MASK)
    assert not any(v.requires_grad for v in m.values())
