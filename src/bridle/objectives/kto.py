"""Kahneman-Tversky Optimization: learn from single responses labelled good or bad, no pairs needed."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def kto(policy_logps: Tensor, ref_logps: Tensor, desirable: Tensor, policy_kl_logps: Tensor, ref_kl_logps: Tensor,
        *, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
        kl_mean: Callable[[Tensor], Tensor] = torch.mean) -> tuple[Tensor, dict[str, Tensor]]:
    """KTO (Ethayarajh et al. 2024, eq. 7-8).

    r(x, y) = log π(y|x) − log π_ref(y|x)
    z0      = max(0, mean over mismatched pairs (x, y') of [log π(y'|x) − log π_ref(y'|x)])   (detached)
    L       = mean over examples of  λ_D · (1 − σ(β·(r − z0)))  for desirable y,
                                     λ_U · (1 − σ(β·(z0 − r)))  for undesirable y.

    z0 is the batch estimate of KL(π || π_ref): completions paired with prompts they do not answer, so the reward
    of a response is judged against what the policy gives any response. It is detached (no gradient), as in the
    paper and TRL. `desirable` is a (B,) bool tensor; the KL tensors have their own length (mismatched pairs).
    Inputs: summed completion log-probs. `kl_mean`: how the mismatched pairs' log-ratios are averaged: over these,
    or over every process's share of a global batch (bridle.engine.distributed.global_mean; TRL gathers them too).
    Metrics: rewards β·r of desirable / undesirable examples, their margin, accuracy (sign of r agrees with
    the label), z0 as `kl`.
    """
    desirable = desirable.bool()
    z0 = kl_mean(policy_kl_logps - ref_kl_logps).clamp(min=0).detach()
    ratio = policy_logps - ref_logps
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (ratio - z0))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratio))))
    rewards = beta * ratio.detach()
    zero = rewards.new_zeros(())
    chosen = rewards[desirable].mean() if desirable.any() else zero
    rejected = rewards[~desirable].mean() if (~desirable).any() else zero
    agree = torch.where(desirable, rewards > 0, rewards < 0).float().mean()
    metrics = {"reward/chosen": chosen, "reward/rejected": rejected, "reward/margin": chosen - rejected,
               "reward/accuracy": agree, "kl": z0, "logps/chosen": _masked_mean(policy_logps, desirable),
               "logps/rejected": _masked_mean(policy_logps, ~desirable)}
    return losses.mean(), metrics


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return values.detach()[mask].mean() if mask.any() else values.new_zeros(())
