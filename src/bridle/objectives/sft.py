"""Supervised fine-tuning loss."""

from __future__ import annotations

from torch import Tensor

from bridle.ops import masked_mean


def sft(token_logps: Tensor, loss_mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Token-level negative log-likelihood of the completion (InstructGPT stage 1, Ouyang et al. 2022).

    L = −(1/N) Σ_t m_t · log π(y_t | x, y_<t),   N = Σ_t m_t

    token_logps: (B, T) or (N,) log-probs of the target tokens; loss_mask: same shape, 1 where a token counts
    (None: every given token counts, e.g. when only completion positions were gathered).
    Returns (loss, metrics).
    """
    nll = -token_logps.mean() if loss_mask is None else masked_mean(-token_logps, loss_mask)
    return nll, {"nll": nll.detach()}
