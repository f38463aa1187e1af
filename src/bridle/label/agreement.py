"""Fleiss' kappa: how much several annotators agree beyond chance when each item has the same number of votes.

(Cohen's kappa for two raters is `bridle.eval.agreement.cohen_kappa`.)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FleissKappa:
    kappa: float
    observed: float   # P̄, the mean per-item agreement
    expected: float   # P̄_e, the agreement expected by chance
    items: int
    raters: int       # votes per item


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> FleissKappa:
    """Fleiss' kappa (Fleiss 1971, "Measuring nominal scale agreement among many raters") of an items × categories
    table of vote counts, every row summing to the same number of raters n ≥ 2:

        P_i = (Σ_j n_ij² − n) / (n (n − 1)),   P̄ = mean_i P_i,   p_j = Σ_i n_ij / (N n),   P̄_e = Σ_j p_j²
        κ = (P̄ − P̄_e) / (1 − P̄_e)

    κ is NaN when P̄_e = 1 (every vote in one category) or there are no items.
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2:
        raise ValueError(f"counts must be an items × categories table, got shape {table.shape}")
    if table.shape[0] == 0:
        return FleissKappa(math.nan, math.nan, math.nan, 0, 0)
    totals = table.sum(axis=1)
    n = float(totals[0])
    if n < 2 or not np.all(totals == n):
        raise ValueError(f"every item needs the same number of raters, 2 or more; got {sorted(set(totals.tolist()))}")
    items = table.shape[0]
    per_item = ((table ** 2).sum(axis=1) - n) / (n * (n - 1))
    observed = float(per_item.mean())
    p = table.sum(axis=0) / (items * n)
    expected = float((p ** 2).sum())
    kappa = (observed - expected) / (1.0 - expected) if expected < 1.0 else math.nan
    return FleissKappa(kappa, observed, expected, items, int(n))


def count_table(items: Sequence[Sequence[Hashable]], labels: Sequence[Hashable]) -> np.ndarray:
    """Items × labels vote counts from each item's list of votes."""
    index = {label: j for j, label in enumerate(labels)}
    table = np.zeros((len(items), len(labels)), dtype=int)
    for i, votes in enumerate(items):
        for vote in votes:
            table[i, index[vote]] += 1
    return table
