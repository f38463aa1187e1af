"""Bradley-Terry reward-model loss (InstructGPT stage 2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def bradley_terry(chosen_rewards: Tensor, rejected_rewards: Tensor, *, margin: Tensor | None = None,
                  center_coef: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Pairwise Bradley-Terry loss on scalar rewards (Ouyang et al. 2022, eq. 1; margin as in Llama 2, Touvron et
    al. 2023; centering as in Eisenstein et al. 2023).

    L = −(1/B) Σ_i log σ(r(x_i, y_c,i) − r(x_i, y_r,i) − m_i)  +  c · (1/B) Σ_i (r(x_i, y_c,i) + r(x_i, y_r,i))²

    The centering term (c = `center_coef`) pins the mean reward near 0; the BT term alone only fixes differences,
    so without it rewards drift by an arbitrary constant that later stages (PPO, normalization) would inherit.

    chosen_rewards, rejected_rewards: (B,); margin: (B,) or None (0). Returns (loss, metrics).
    """
    diff = chosen_rewards.float() - rejected_rewards.float()
    shifted = diff if margin is None else diff - margin.to(diff)
    loss = -F.logsigmoid(shifted).mean()
    if center_coef:
        loss = loss + center_coef * (chosen_rewards.float() + rejected_rewards.float()).pow(2).mean()
    detached = diff.detach()
    return loss, {"reward/accuracy": (detached > 0).float().mean(), "reward/margin": detached.mean(),
                  "reward/chosen": chosen_rewards.detach().float().mean(),
                  "reward/rejected": rejected_rewards.detach().float().mean()}
