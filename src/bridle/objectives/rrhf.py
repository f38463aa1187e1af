"""RRHF: rank responses by score with a hinge on length-normalized log-probs, plus SFT on the best one."""

from __future__ import annotations

import torch
from torch import Tensor


def rrhf(logps: Tensor, lengths: Tensor, scores: Tensor, valid: Tensor, *, sft_weight: float = 1.0
         ) -> tuple[Tensor, dict[str, Tensor]]:
    """Rank Responses to align with Human Feedback (Yuan et al. 2023, eqs. 1-3).

    p_i     = log π(y_i|x) / |y_i|                       (length-normalized)
    L_rank  = Σ_{r_i < r_j} max(0, p_i − p_j)             (every pair ordered wrongly by the model costs its gap)
    L_ft    = −(1/|y_b|) Σ_t log π(y_b,t|x, y_b,<t),  b = argmax_i r_i
    L       = mean over prompts of (L_rank + sft_weight · L_ft)

    logps: summed log-probs (B, K); lengths: completion tokens (B, K); scores: r (B, K); valid: (B, K) bool for
    prompts with fewer than K responses (padding slots are ignored). No reference model and one forward pass.
    Metrics: reward/chosen is p of the best response, reward/rejected the mean p of the others, accuracy the
    fraction of ordered pairs (r_i < r_j) the model already ranks right (p_i < p_j).
    """
    valid = valid.bool()
    p = logps / lengths.clamp(min=1)
    # pair (i, j) counts when r_i < r_j: worse[b, i, j]
    worse = (scores.unsqueeze(2) < scores.unsqueeze(1)) & valid.unsqueeze(2) & valid.unsqueeze(1)
    gaps = p.unsqueeze(2) - p.unsqueeze(1)  # p_i − p_j
    rank_loss = (torch.relu(gaps) * worse).sum(dim=(1, 2))
    masked_scores = scores.masked_fill(~valid, float("-inf"))
    best = masked_scores.argmax(dim=1)
    rows = torch.arange(logps.shape[0], device=logps.device)
    sft_loss = -logps[rows, best] / lengths[rows, best].clamp(min=1)
    loss = (rank_loss + sft_weight * sft_loss).mean()
    best_p = p.detach()[rows, best]
    others = valid.clone()
    others[rows, best] = False
    other_p = (p.detach() * others).sum(1) / others.sum(1).clamp(min=1)
    pairs = worse.sum().clamp(min=1)
    metrics = {"reward/chosen": best_p.mean(), "reward/rejected": other_p.mean(),
               "reward/margin": (best_p - other_p).mean(),
               "reward/accuracy": ((gaps.detach() < 0) & worse).sum() / pairs,
               "rank_loss": rank_loss.detach().mean(), "nll": sft_loss.detach().mean(),
               "logps/chosen": logps.detach()[rows, best].mean()}
    return loss, metrics
