"""The quickstart as a new user runs it: the embedded SmolLM2-135M, SFT → RM → PPO and SFT → DPO, 40 held-out
questions. About 7 minutes on 2 idle CPU cores (docs/quickstart.md has a measured run). The bar: one-sentence answers
rise from the base model's rate with an interval that excludes no change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bridle.cli.main import main


@pytest.mark.slow
def test_quickstart_shows_measured_improvement(tmp_path):
    out = Path(os.environ.get("OUT_DIR") or tmp_path / "qs")
    assert main(["quickstart", "--output-dir", str(out)]) == 0
    checks = json.loads((out / "eval" / "report.json").read_text())["checks"]["one short sentence"]
    print({name: (c["rate"], c["interval"]) for name, c in checks.items()})
    base_high = checks["base"]["interval"][1]
    for name in ("sft", "ppo", "dpo"):
        assert checks[name]["interval"][0] > base_high, name
    assert (out / "report.html").is_file()
