"""Masked reductions shared by objectives."""

from __future__ import annotations

from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `values` where `mask` is true; 0 where nothing is selected (no NaN from an empty mask)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_sum(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of `values` where `mask` is true."""
    return (values * mask.to(values.dtype)).sum() if dim is None else (values * mask.to(values.dtype)).sum(dim)


__all__ = ["masked_mean", "masked_sum"]
