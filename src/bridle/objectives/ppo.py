"""Online policy-gradient losses side by side: PPO's clipped policy and value losses, and GRPO.

All per-token inputs are (B, T) over response tokens with `mask` (B, T) true on real tokens. `token_logps` are
the current policy's log-probs of the sampled tokens (with grad); `old_token_logps` those of the policy that
sampled them (no grad). Each function returns (loss, metrics) with metrics detached scalars; the metrics are
always token means over the mask, whatever the loss aggregation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bridle.ops.masked import masked_mean
from bridle.ops.rl import kl_penalty

Metrics = dict[str, Tensor]
AGGREGATIONS = ("token", "sequence", "sequence_sum")


def _aggregate(per_token: Tensor, mask: Tensor, aggregation: str) -> Tensor:
    """Reduce a (B, T) per-token loss to a scalar.

    "token":    Σ_{b,t} m·ℓ / Σ_{b,t} m — every response token in the batch weighs the same (PPO, DAPO);
    "sequence": 1/B Σ_b (Σ_t m·ℓ / Σ_t m) — each sequence weighs the same (GRPO paper, eq. 3);
    "sequence_sum": 1/B Σ_b Σ_t m·ℓ — the whole sequence's log-prob, as REINFORCE / RLOO (Ahmadian et al. 2024).
    """
    if aggregation == "token":
        return masked_mean(per_token, mask)
    if aggregation == "sequence":
        return masked_mean(per_token, mask, dim=-1).mean()
    if aggregation == "sequence_sum":
        return (per_token * mask).sum(-1).mean()
    raise ValueError(f"unknown aggregation={aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")


def _clipped_surrogate(token_logps: Tensor, old_token_logps: Tensor, advantages: Tensor, mask: Tensor,
                       clip_eps: float, clip_eps_high: float | None) -> tuple[Tensor, Metrics]:
    """Per-token −min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)A), (B, T), and the policy metrics."""
    if advantages.dim() == 1:  # one advantage per sequence (GRPO, RLOO): broadcast over its tokens
        advantages = advantages.unsqueeze(-1)
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    log_ratio = token_logps - old_token_logps
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + eps_high) * advantages
    per_token = -torch.min(unclipped, clipped)
    # the clipped term is the one taken (and its gradient is 0) only when ρ left the range in A's direction
    is_clipped = ((ratio > 1 + eps_high) & (advantages > 0)) | ((ratio < 1 - clip_eps) & (advantages < 0))
    log_ratio, ratio = log_ratio.detach(), ratio.detach()
    metrics = {"policy/clipfrac": masked_mean(is_clipped.to(ratio.dtype), mask),
               "policy/approx_kl": masked_mean(0.5 * log_ratio**2, mask),
               "policy/ratio": masked_mean(ratio, mask)}
    return per_token, metrics


def ppo_policy(token_logps: Tensor, old_token_logps: Tensor, advantages: Tensor, mask: Tensor, *,
               clip_eps: float = 0.2, clip_eps_high: float | None = None, aggregation: str = "token"
               ) -> tuple[Tensor, Metrics]:
    """PPO clipped surrogate objective (Schulman et al. 2017, eq. 7), as a loss to minimize.

    L = −min(ρ_t A_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) A_t),   ρ_t = π(a_t|s_t) / π_old(a_t|s_t).

    ε_low = `clip_eps`; ε_high = `clip_eps_high`, or ε_low when None (DAPO's "clip-higher", Yu et al. 2025, sets it
    larger). `advantages`: (B, T) per token (GAE), or (B,) / (B, 1) per sequence (GRPO, RLOO). Aggregation:
    "token" (mean over all masked tokens) or "sequence" (mean within each sequence, then over sequences).
    Metrics: policy/clipfrac (masked tokens whose clipped term is active), policy/approx_kl (mean ½(log ρ)²),
    policy/ratio (mean ρ).
    """
    per_token, metrics = _clipped_surrogate(token_logps, old_token_logps, advantages, mask, clip_eps, clip_eps_high)
    return _aggregate(per_token, mask, aggregation), metrics


def ppo_value(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *, clip_range: float = 0.2
              ) -> tuple[Tensor, Metrics]:
    """Clipped value loss (Huang et al. 2023, "The N Implementation Details of RLHF with PPO": value clipping).

    L = ½ · max((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²),   token mean over the mask.

    `values`: current value-head outputs (with grad); `old_values`: those at rollout time; `returns`: GAE returns;
    all (B, T). Metrics: value/clipfrac (tokens where the clipped error is the larger), value/mean, value/error
    (mean (V − R)²).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = _aggregate(0.5 * torch.max(error, clipped_error), mask, "token")
    metrics = {"value/clipfrac": masked_mean((clipped_error > error).to(values.dtype), mask),
               "value/mean": masked_mean(values.detach(), mask),
               "value/error": masked_mean(error.detach(), mask)}
    return loss, metrics


def grpo(token_logps: Tensor, old_token_logps: Tensor, ref_token_logps: Tensor | None, advantages: Tensor,
         mask: Tensor, *, clip_eps: float = 0.2, clip_eps_high: float | None = None, beta: float = 0.04,
         aggregation: str = "sequence") -> tuple[Tensor, Metrics]:
    """Group Relative Policy Optimization (Shao et al. 2024, eq. 3), as a loss to minimize.

    L = 1/G Σ_i 1/|o_i| Σ_t −[min(ρ_{i,t} A_i, clip(ρ_{i,t}, 1 − ε_low, 1 + ε_high) A_i) − β·D_KL(π ‖ π_ref)],
    D_KL = π_ref/π − log(π_ref/π) − 1   (the k3 estimator, per token, eq. 4).

    `advantages`: (N,) one per completion (see `bridle.ops.group_normalize`); per-token inputs (N, T).
    `ref_token_logps=None` or β = 0 drops the KL term (as DAPO and Dr. GRPO do). The default aggregation is the
    paper's per-sequence mean; "token" gives DAPO's token-level mean. Metrics: the policy ones of `ppo_policy`,
    plus kl/ref (token mean of k3) when a reference is given.
    """
    per_token, metrics = _clipped_surrogate(token_logps, old_token_logps, advantages, mask, clip_eps, clip_eps_high)
    if ref_token_logps is not None:
        kl = kl_penalty(token_logps, ref_token_logps, "k3")
        metrics["kl/ref"] = masked_mean(kl.detach(), mask)
        if beta != 0:
            per_token = per_token + beta * kl
    return _aggregate(per_token, mask, aggregation), metrics


__all__ = ["AGGREGATIONS", "grpo", "ppo_policy", "ppo_value"]
