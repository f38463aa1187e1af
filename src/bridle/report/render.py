"""A `Page` as one self-contained HTML file: Jinja2 with autoescaping on, CSS inline, plots as inline SVG.

Everything that comes from a run (prompts, answers, config values, paths) goes through the template's escaping;
the only markup passed through unescaped is the SVG that matplotlib drew from numbers. The page loads nothing
(no scripts, fonts or images from anywhere), and its Content-Security-Policy forbids scripts outright, so even a
template mistake could not run model text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridle import __version__
from bridle.errors import BridleError
from bridle.report.collect import Page, collect
from bridle.report.plots import have_matplotlib, plot_svg


def pct(x: Any, digits: int = 1) -> str:
    """0.5625 → "56.2%"; missing → "—"."""
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return "—"
    return f"{100 * x:.{digits}f}%"


def interval(pair: Any, *, percent: bool = True) -> str:
    """[low, high] as "[41.2%, 70.0%]" (or plain numbers); "—" when there is none."""
    if not isinstance(pair, Sequence) or len(pair) != 2 or any(
            not isinstance(x, (int, float)) or not math.isfinite(x) for x in pair):
        return "—"
    return f"[{pct(pair[0])}, {pct(pair[1])}]" if percent else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def number(x: Any, digits: int = 3) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}"


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def blank_note(text: str) -> str:
    """A note for an answer that shows as nothing: empty, or only whitespace."""
    if text.strip():
        return ""
    return "(empty answer)" if not text else f"(only whitespace: {len(text)} characters)"


def environment() -> Any:
    try:  # torch depends on jinja2, so it is there wherever bridle runs; say so plainly if not
        from jinja2 import Environment, PackageLoader, StrictUndefined
    except ImportError as error:
        raise BridleError("bridle report needs jinja2: pip install jinja2") from error

    env = Environment(loader=PackageLoader("bridle.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, interval=interval, number=number, duration=duration, blank_note=blank_note)
    return env


def figures(page: Page) -> list[list[tuple[Any, Any]]]:
    """Per stage, its plots with their SVG markup (None for all when matplotlib is missing)."""
    from markupsafe import Markup

    drawn = have_matplotlib()
    return [[(plot, Markup(plot_svg(plot, f"s{i}p{j}-")) if drawn else None) for j, plot in enumerate(stage.plots)]
            for i, stage in enumerate(page.stages)]


def render_page(page: Page) -> str:
    """The report's HTML text."""
    caveats = [(stage.name, text) for stage in page.stages for text in stage.caveats]
    caveats += [(stage.name, text) for stage in page.evaluations for text in stage.evaluation.weaknesses]
    return environment().get_template("report.html").render(
        page=page, figures=figures(page), caveats=caveats, version=__version__, matplotlib=have_matplotlib())


def write_report(run_dir: Path, output: Path | None = None, *, samples: int = 8) -> Path:
    """Write the HTML report of `run_dir` (a recipe's run dir, a training run dir or a `bridle eval` output dir)
    to `output` (default RUN_DIR/report.html), showing `samples` prompts' answers per evaluation; returns the path.
    Written beside and renamed, so a reader never opens half a page."""
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / "report.html"
    text = render_page(collect(run_dir, samples=samples))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(output)
    return output
