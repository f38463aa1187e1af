"""`bridle redteam` on the embedded SmolLM2-135M (target and LLM classifier) and real data: 40 HarmBench standard
behaviours and 30 XSTest safe prompts, 64-token answers, both classifiers: 12 CPU-minutes (16m47s of wall time,
sharing the 2 cores with other jobs).

What it pins: the run finishes, every rate in the report is the count on disk, each interval holds its rate, and
both tables are printed. It does not pin the numbers: a 135M classifier is near chance
(see docs/feedback/redteam.md for the measured figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridle.cli.main import main

pytestmark = pytest.mark.slow


def test_embedded_model_on_harmbench_and_xstest(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    if not (shared_data / "redteam" / "harmbench_behaviors_text_all.jsonl.gz").is_file():
        pytest.skip(f"no HarmBench behaviours under {shared_data}/redteam")
    monkeypatch.setenv("BRIDLE_SHARED_DATA", str(shared_data))
    out = tmp_path / "out"
    assert main(["redteam", "--model", "smollm2-135m", "--prompts", "harmbench-standard", "--limit", "40",
                 "--xstest", "30", "--classifier", "local,strmatch", "--max-new-tokens", "64", "--output-dir",
                 str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    verdicts = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
    assert report["attack_prompts"] == 40 and report["xstest_prompts"] == 30
    for name in ("local", "strmatch"):
        result = report["results"][name]
        for kind, section, rate in (("attack", result["attack"], "asr"),
                                    ("xstest", result["over_refusal"], "refusal_rate")):
            labels = [v["label"] for v in verdicts if v["classifier"] == name and v["kind"] == kind]
            read = [x for x in labels if x is not None]
            assert section["prompts"] == len(labels) and section["unparsed"] == len(labels) - len(read)
            assert section[rate] == pytest.approx(read.count("H" if rate == "asr" else "R") / len(read))
            low, high = section[f"{rate}_ci95"]
            assert low <= section[rate] <= high
        assert sum(c["prompts"] for c in result["attack"]["by_category"].values()) == 40
    assert report["refusal_agreement"]["local vs strmatch"]["answers"] == 70
    printed = capsys.readouterr()
    assert "attack success (ASR)" in printed.out and "over-refusal" in printed.out
    print(json.dumps({name: {"asr": r["attack"]["asr"], "asr_ci95": r["attack"]["asr_ci95"],
                             "over_refusal": r["over_refusal"]["refusal_rate"],
                             "over_refusal_ci95": r["over_refusal"]["refusal_rate_ci95"]}
                      for name, r in report["results"].items()}))
