"""The HTML page: every section present with its numbers, model text escaped, nothing loaded from anywhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from markupsafe import escape
from report_dirs import PLANTED, write_eval_dir, write_recipe_dir, write_training_dir

from bridle.report import render_page, write_report
from bridle.report.collect import collect


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def elements(text: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag of the page with its attributes, as a browser's tokenizer sees them (text is not tags)."""
    parser = Elements()
    parser.feed(text)
    return parser.found


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory):
    return write_recipe_dir(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def page_html(recipe) -> str:
    return write_report(recipe).read_text()


def test_model_text_is_escaped_never_markup(page_html):
    assert PLANTED not in page_html and "<script" not in page_html and "<img" not in page_html
    assert str(escape(PLANTED)) in page_html
    assert "quick &lt;recipe&gt;" in page_html  # the recipe's name, config values and paths too
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page_html and "in/&lt;model&gt;" in page_html


def test_nothing_is_loaded_from_a_network(page_html):
    assert "http://" not in page_html and "https://" not in page_html
    tags = elements(page_html)
    links = [value for _, attrs in tags for name, value in attrs if name in ("src", "href", "xlink:href")]
    assert links and all(link.startswith("#") for link in links)  # only in-page anchors and SVG references
    assert not {tag for tag, _ in tags} & {"script", "img", "link", "iframe", "object", "embed"}
    assert "@import" not in page_html and "url(" not in page_html.replace("url(#", "")
    assert "default-src 'none'" in page_html  # the CSP forbids scripts and every external resource


def test_eval_win_rate_with_interval_and_tables_are_shown(page_html):
    assert ("Judge local:judge-model, 12 verdicts: tuned won 75% against base (95% interval [54%, 92%]; ties count "
            "half).") in page_html
    assert "<td class=\"num\">25.0%</td><td class=\"num\">[8.3%, 45.8%]</td>" in page_html  # report.json's view
    assert "Reward model: tuned scored higher than base on 100% of 12 prompts" in page_html
    assert "Check exact_answer: base 25% → tuned 75%." in page_html
    assert "<td class=\"num\">0.420</td>" in page_html  # tuned's KL to the reference
    assert "not a KL estimate" in page_html


def test_what_is_weak_lists_the_rules_that_fired(page_html):
    weak = page_html[page_html.index('id="weak"'):page_html.index('class="stage"')]
    assert "few prompts (12, under 50)" in weak and "overlap: no clear difference" in weak
    assert "not an estimate of KL" in weak


def test_every_plot_is_drawn_with_every_logged_point(page_html):
    figures = re.findall(r'<figure class="plot" data-plot="(\w+)" data-series="(\d+)"\s+data-points="([\d,]*)">'
                         r'(.*?)</figure>', page_html, flags=re.S)
    assert [f[0] for f in figures] == ["loss", "loss", "reward", "kl", "length"]  # sft: loss; ppo: four
    assert figures[0][2] == "12,2"  # sft's loss (the torn line dropped) and its two eval points
    for _, series, points, svg in figures:
        groups = re.findall(r'<g id="s\d+p\d+-series-(\d+)">\s*<path d="([^"]*)"', svg)
        assert len(groups) == int(series)
        for (_, path), count in zip(groups, points.split(",")):
            assert len(re.findall(r"[ML]\s*-?[\d.]+\s+-?[\d.]+", path)) == int(count)


def test_samples_side_by_side_with_rewards_and_verdicts(page_html):
    rows = re.findall(r'<tr class="sample">(.*?)</tr>', page_html, flags=re.S)
    assert len(rows) == 8  # --samples default
    for row in rows:
        assert row.count('<pre class="answer">') == 2 and "reward " in row and "base vs tuned: <b>" in row
    assert "Answers side by side <span class=\"muted\">(8 of 12 prompts)" in page_html


def test_lineage_and_stages_are_shown(page_html):
    assert "<code>fp-sft</code>" in page_html and "transformers 5.24.0" in page_html
    assert re.search(r"status-pending\">pending", page_html)
    assert "Nothing was written for this stage (status: pending)." in page_html


def test_without_matplotlib_the_page_says_so_and_keeps_the_rest(recipe, monkeypatch):
    monkeypatch.setattr("bridle.report.render.have_matplotlib", lambda: False)
    text = render_page(collect(recipe))
    assert "<svg" not in text and text.count("Plots need matplotlib") == 2  # sft and ppo
    assert "tuned won 75% against base" in text


def test_single_dirs_render_and_default_output_is_in_the_run_dir(tmp_path):
    run = write_training_dir(tmp_path / "sft", "sft", [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
    assert write_report(run) == run / "report.html"
    text = (run / "report.html").read_text()
    assert "Bridle report of a training run" in text and "No evaluation stage" in text and "<svg" in text
    ev = write_eval_dir(tmp_path / "eval")
    out = write_report(ev, tmp_path / "elsewhere" / "r.html", samples=3)
    assert out.is_file() and len(re.findall(r'<tr class="sample">', out.read_text())) == 3
    assert not list((tmp_path / "elsewhere").glob(".*partial"))


def test_the_same_run_gives_the_same_page_byte_for_byte(recipe, page_html):
    assert render_page(collect(recipe)) == page_html  # no dates, no random ids: reports can be diffed
