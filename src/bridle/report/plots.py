"""Training curves as inline SVG: one plot per quantity a run logged, drawn by matplotlib into a string.

Inline SVG keeps the report one self-contained file that needs no network and no JavaScript. A quantity the run
never logged gets no plot (empty axes would suggest a measurement that was not made). Paths are not simplified,
so a series' SVG path has one vertex per logged point, which the tests count.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# One plot per quantity: (name, title, metric keys). Each key's "eval/" twin (held-out numbers) joins its plot.
CURVES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss", "loss", ("loss", "loss/policy", "loss/value")),
    ("reward", "reward", ("reward/mean", "reward/score", "reward/chosen", "reward/rejected", "reward/margin")),
    ("kl", "KL to the reference (per response; GRPO: per token)", ("kl/ref", "kl/ref_per_token", "kl")),
    ("accuracy", "preference accuracy (margin > 0)", ("reward/accuracy", "accuracy")),
    ("length", "response length (tokens)", ("rollout/response_length", "response_length")),
    ("judge", "judge win rate against the initial policy", ("monitor/judge_win_rate",)),
)


@dataclass(frozen=True)
class Series:
    """One metric over optimizer steps."""

    key: str
    steps: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Plot:
    """One quantity's curves; every series has at least one point."""

    name: str
    title: str
    series: tuple[Series, ...]


def metric_keys(keys: Sequence[str]) -> list[str]:
    """The keys and their held-out twins ("eval/" + key), train first."""
    return list(keys) + [f"eval/{key}" for key in keys]


def series_of(records: Sequence[Mapping[str, Any]], key: str) -> Series | None:
    """(step, value) of every record that logged `key` as a finite number; None when none did."""
    points = [(float(r["step"]), float(r[key])) for r in records
              if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
              and isinstance(r.get("step"), (int, float)) and math.isfinite(r[key])]
    if not points:
        return None
    steps, values = zip(*points)
    return Series(key, steps, values)


def curves(records: Sequence[Mapping[str, Any]]) -> list[Plot]:
    """The plots of CURVES that have data in `records` (metrics.jsonl rows), in CURVES' order."""
    plots = []
    for name, title, keys in CURVES:
        found = tuple(s for s in (series_of(records, key) for key in metric_keys(keys)) if s is not None)
        if found:
            plots.append(Plot(name, title, found))
    return plots


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_svg(plot: Plot, prefix: str) -> str:
    """`plot` as an <svg> element for inline HTML. `prefix` makes its element ids unique within the page; the
    series' lines are the groups with id `{prefix}series-{i}`. Needs matplotlib."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no backend to switch, no global figure state
    from matplotlib.ticker import MaxNLocator

    settings = {"svg.fonttype": "none", "svg.hashsalt": prefix, "path.simplify": False, "font.size": 9}
    with matplotlib.rc_context(settings):  # the salt makes clip-path ids the same on every run
        figure = Figure(figsize=(5.6, 3.2))
        axis = figure.subplots()
        for i, series in enumerate(plot.series):
            few = len(series.steps) < 30
            axis.plot(series.steps, series.values, marker="o" if few else None, markersize=3, label=series.key,
                      gid=f"series-{i}", linestyle="--" if series.key.startswith("eval/") else "-")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("optimizer step")
        axis.set_title(plot.title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return inline_svg(buffer.getvalue(), prefix)


def inline_svg(text: str, prefix: str) -> str:
    """A standalone SVG file's text made fit to sit inside HTML: no XML prolog or DOCTYPE, no namespace URLs
    (the HTML parser knows SVG), ids prefixed so that several plots on one page never share one, and a width that
    follows the page."""
    text = text[text.index("<svg"):]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)
    text = re.sub(r'(<svg[^>]*?)\swidth="[^"]*"\sheight="[^"]*"', r'\1 width="100%"', text, count=1)
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}{m.group(1)})", text)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
