"""`bridle quickstart --profile tiny` on a tiny model: the whole pipeline, its checks and report.html."""

from __future__ import annotations

import json

from bridle.cli.main import main
from bridle.quickstart.checks import one_short_sentence


def test_quickstart_runs_every_stage_and_writes_checks_and_report(tiny_model_dir, tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--model", str(tiny_model_dir), "--profile", "tiny", "--output-dir", str(out)]) == 0
    state = json.loads((out / "recipe_state.json").read_text())
    assert [(s["name"], s["status"]) for s in state["stages"]] == [
        ("sft", "done"), ("rm", "done"), ("ppo", "done"), ("dpo", "done"), ("eval", "done")]
    report = json.loads((out / "eval" / "report.json").read_text())
    rows = [json.loads(x) for x in (out / "eval" / "generations.jsonl").read_text().splitlines()]
    checks = report["checks"]["one short sentence"]
    assert set(checks) == {"base", "sft", "ppo", "dpo"}
    for name, check in checks.items():
        mine = [r["output"] for r in rows if r["model"] == name]
        assert check["n"] == len(mine) == 6 and check["rate"] == sum(one_short_sentence(mine)) / 6
    assert {"kl_to_reference", "reward"} <= set(report["models"]["dpo"])
    html = (out / "report.html").read_text()
    assert "one short sentence" in html and "quickstart" in html
    # Rerunning skips every stage.
    assert main(["quickstart", "--model", str(tiny_model_dir), "--profile", "tiny", "--output-dir", str(out)]) == 0
    state = json.loads((out / "recipe_state.json").read_text())
    assert {s["status"] for s in state["stages"]} == {"skipped"}
