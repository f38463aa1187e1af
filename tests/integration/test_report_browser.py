"""`bridle report` on real run directories (a tiny `bridle sft` run, a `bridle eval` output), opened in a real
headless browser: Debian's chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from bridle.cli.main import main
from bridle.models.tiny import tiny_causal_lm, tiny_tokenizer
from bridle.report import write_report
from bridle.report.collect import collect

PLANTED = "<script>window.__pwned = 1; alert(1)</script><img src=x onerror=\"window.__pwned = 2; alert(2)\">"
PROMPTS = ["Say hi.", "Name a fruit.", "What is 2+2?", "Tell me a joke.", "Spell cat.", "Count to three."]
LONGER = "def longer(prompts, completions, **_):\n    return [float(len(c)) for c in completions]\n"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def recipe(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe dir as the recipe runner writes it: a real sft run, a hand-logged ppo run and a real eval."""
    tmp = tmp_path_factory.mktemp("report-browser")
    root = tmp / "run"
    data = write_jsonl(tmp / "sft.jsonl", [{"prompt": p, "completion": f"Answer to {p}"} for p in PROMPTS * 2])
    assert main(["sft", "--model", str(tiny_model_dir), "--data", str(data), "--output-dir", str(root / "sft"),
                 "--max-length", "192", "--batch-size", "2", "--max-steps", "5", "--log-every", "1",
                 "--eval-fraction", "0.25", "--eval-every", "2", "--no-progress"]) == 0
    (root / "ppo").mkdir()
    write_jsonl(root / "ppo" / "metrics.jsonl", [
        {"step": s, "loss": 1.0 / s, "reward/mean": 0.1 * s, "kl/ref": 0.02 * s, "rollout/response_length": 20 + s}
        for s in range(1, 7)])
    torch.manual_seed(0)  # a 1-label classifier on the tiny Llama: a reward model with random weights
    config = tiny_causal_lm(seed=4).config
    config.num_labels, config.pad_token_id = 1, 2
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp / "rm")
    tiny_tokenizer().save_pretrained(tmp / "rm")
    (tmp / "rules.py").write_text(LONGER)
    files = [write_jsonl(tmp / f"{name}.jsonl", [{"prompt": p, "output": answer(name, i)}
                                                 for i, p in enumerate(PROMPTS)]) for name in ("base", "tuned")]
    assert main(["eval", "--data", str(write_jsonl(tmp / "prompts.jsonl", [{"instruction": p} for p in PROMPTS])),
                 "--generations", f"base={files[0]}", "--generations", f"tuned={files[1]}", "--judge",
                 f"rule:{tmp / 'rules.py'}:longer", "--reward-model", str(tmp / "rm"), "--resamples", "200",
                 "--output-dir", str(root / "eval"), "--no-progress"]) == 0
    stages = [{"name": n, "command": f"bridle {n}", "status": "done", "dir": n, "seconds": 1.5, "stopped_by": None}
              for n in ("sft", "ppo", "eval")]
    (root / "recipe_state.json").write_text(json.dumps({"name": "browser check", "stages": stages}))
    for name in ("sft", "ppo", "eval"):
        (root / name / "lineage.json").write_text(json.dumps({
            "stage": name, "command": f"bridle {name}", "config": {"note": PLANTED},
            "inputs": [{"name": "model", "path": str(tiny_model_dir), "fingerprint": f"fp-{name}"}],
            "versions": {"bridle": "0.1.0", "torch": torch.__version__, "transformers": "5"}, "outputs": {}}))
    return root


def answer(model: str, i: int) -> str:
    """tuned's answers are longer (the rule judge prefers them); its third answer is the planted markup."""
    if (model, i) == ("tuned", 2):
        return PLANTED
    return f"{model} {i}" + (" with more words" if model == "tuned" else "")


def test_report_of_real_runs_plots_every_logged_step_and_shows_the_eval(recipe):
    logged = [json.loads(line) for line in (recipe / "sft" / "metrics.jsonl").read_text().splitlines()]
    page = collect(recipe)
    sft, ppo, ev = page.stages
    loss = {s.key: len(s.steps) for s in sft.plots[0].series}
    assert loss == {"loss": sum("loss" in r for r in logged), "eval/loss": sum("eval/loss" in r for r in logged)}
    assert loss["loss"] == 5 and loss["eval/loss"] >= 2
    assert [p.name for p in ppo.plots] == ["loss", "reward", "kl", "length"]
    report = json.loads((recipe / "eval" / "report.json").read_text())
    assert report["pairs"][0]["win_rate"] == 0.0  # the rule judge prefers tuned's longer answers every time
    assert ev.evaluation.headlines[0].startswith("Judge rule:") and "tuned won 100% against base" in \
        ev.evaluation.headlines[0]
    assert ev.evaluation.reward_pairs and "few prompts (6" in ev.evaluation.weaknesses[0]


def test_report_renders_in_a_headless_browser_without_running_model_text(recipe, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no system chromium (apt-get install chromium; .ci/run does); no browser is downloaded")
    path = write_report(recipe, tmp_path / "report.html")
    url = path.resolve().as_uri()
    errors, dialogs, requests = [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            plots = page.evaluate("""() => [...document.querySelectorAll('figure.plot')].map(f => ({
                plot: f.dataset.plot, points: f.dataset.points.split(',').map(Number),
                drawn: [...f.querySelectorAll('svg g[id*="-series-"] > path:first-child')].map(p => ({
                    vertices: (p.getAttribute('d').match(/[ML]\\s*-?[\\d.]+\\s+-?[\\d.]+/g) || []).length,
                    box: p.getBBox().width + p.getBBox().height}))}))""")
            pwned = page.evaluate("() => window.__pwned")
            dangerous = page.evaluate("() => document.querySelectorAll('script, img, iframe, object').length")
            answers = page.evaluate("() => [...document.querySelectorAll('pre.answer')].map(p => [p.innerText, "
                                    "p.getBoundingClientRect().height > 0])")
            headlines = page.evaluate("() => [...document.querySelectorAll('ul.headline li')].map(li => li.innerText)")
        finally:
            browser.close()
    assert errors == [] and dialogs == [] and pwned is None and dangerous == 0  # the planted markup never ran
    assert [PLANTED, True] in answers  # it is shown as text, exactly, and laid out
    assert requests == [url]  # the page itself and nothing else: no network, no other file
    assert [p["plot"] for p in plots] == ["loss", "loss", "reward", "kl", "length"]
    for plot in plots:
        assert [d["vertices"] for d in plot["drawn"]] == plot["points"], plot["plot"]
        assert all(d["box"] > 0 for d in plot["drawn"]), plot["plot"]  # laid out, not an empty group
    assert headlines[0].startswith("Judge rule:") and "tuned won 100% against base (95% interval" in headlines[0]
    assert (tmp_path / "report.png").stat().st_size > 10_000
