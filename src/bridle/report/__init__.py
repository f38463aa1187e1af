"""`bridle report`: one self-contained HTML page per run dir: curves, evaluations, answers, lineage, caveats.

    collect (read the dir into a Page) ──► plots (inline SVG) ──► render (Jinja2, escaped) ──► report.html
"""

from __future__ import annotations

from bridle.report.collect import Page, collect
from bridle.report.render import render_page, write_report
from bridle.report.weak import eval_weaknesses

__all__ = ["Page", "collect", "eval_weaknesses", "render_page", "write_report"]
