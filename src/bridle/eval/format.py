"""How rates and their intervals read in the console tables of `bridle eval`, `redteam` and the others."""

from __future__ import annotations

from collections.abc import Sequence


def pct(x: float | None) -> str:
    """A rate in percent with one decimal; "—" when there is none."""
    return "—" if x is None else f"{100 * x:.1f}"


def pct_interval(pair: Sequence[float | None]) -> str:
    """A 95% interval of a rate as "low–high" in whole percent; "—" when either end is missing."""
    return "—" if None in pair else f"{100 * pair[0]:.0f}–{100 * pair[1]:.0f}"  # type: ignore[operator]
