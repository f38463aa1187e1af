"""Curves from metrics rows, and their inline SVG: one plot per logged quantity, one vertex per logged point."""

from __future__ import annotations

import math
import re

import pytest

from bridle.report.plots import curves, inline_svg, plot_svg


def rows() -> list[dict]:
    out = [{"step": s, "loss": 3.0 - 0.1 * s, "reward/accuracy": 0.5 + 0.02 * s, "lr": 1e-5} for s in range(1, 13)]
    out += [{"step": 5, "eval/loss": 2.5}, {"step": 10, "eval/loss": 2.1}, {"step": 11, "loss": math.nan}]
    return out


def series_vertices(svg: str, group_id: str) -> int:
    """Vertices of the line path inside the <g id=group_id> matplotlib wrote for a series."""
    found = re.search(rf'<g id="{re.escape(group_id)}">\s*<path d="([^"]*)"', svg)
    assert found, f"no series group {group_id}"
    return len(re.findall(r"[ML]\s*-?[\d.]+\s+-?[\d.]+", found.group(1)))


def test_one_plot_per_logged_quantity_with_every_point():
    plots = {p.name: p for p in curves(rows())}
    assert list(plots) == ["loss", "accuracy"]  # no reward, KL or length: never logged, so no empty axes
    loss = {s.key: s for s in plots["loss"].series}
    assert list(loss) == ["loss", "eval/loss"]
    assert loss["loss"].steps == tuple(float(s) for s in range(1, 13))  # the NaN row at step 11 is left out
    assert loss["eval/loss"].values == (2.5, 2.1)
    assert len(plots["accuracy"].series[0].steps) == 12


def test_online_metrics_give_reward_kl_and_length_plots():
    records = [{"step": s, "reward/mean": 0.1 * s, "kl/ref_per_token": 0.01 * s, "rollout/response_length": 30 + s,
                "monitor/judge_win_rate": 0.5} for s in range(1, 4)]
    assert [p.name for p in curves(records)] == ["reward", "kl", "length", "judge"]
    assert curves([{"step": 1, "lr": 0.1}, {"step": 2, "tokens_per_s": 5.0}]) == []


def test_svg_has_one_vertex_per_point_and_prefixed_ids():
    pytest.importorskip("matplotlib")
    loss = curves(rows())[0]
    svg = plot_svg(loss, "s3p0-")
    assert svg.startswith("<svg") and 'width="100%"' in svg
    assert series_vertices(svg, "s3p0-series-0") == 12 and series_vertices(svg, "s3p0-series-1") == 2
    assert "http" not in svg and "<?xml" not in svg and "DOCTYPE" not in svg  # no namespace URLs, no prolog
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith("s3p0-") for i in ids)
    refs = re.findall(r'(?:url\(#|href="#)([^)"]+)', svg)
    assert refs and set(refs) <= set(ids)  # every reference points at an element of this plot


def test_inline_svg_rewrites_ids_and_references_together():
    text = ('<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="5pt" '
            'height="3pt" viewBox="0 0 5 3" xmlns="http://www.w3.org/2000/svg"><clipPath id="c1"/>'
            '<path clip-path="url(#c1)"/><use xlink:href="#m1"/></svg>')
    assert inline_svg(text, "x-") == ('<svg width="100%" viewBox="0 0 5 3"><clipPath id="x-c1"/>'
                                      '<path clip-path="url(#x-c1)"/><use xlink:href="#x-m1"/></svg>')
