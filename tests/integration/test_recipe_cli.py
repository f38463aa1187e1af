"""`bridle run` end to end on a tiny model: SFT → DPO → eval, skipped when up to date, rerun from a stage, rerun
downstream when an input changes, and an interrupted training stage resumed from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridle.cli.main import main

RECIPE = """\
name: tiny
stages:
  sft:
    method: sft
    model: {model}
    data: {sft}
    max_steps: {sft_steps}
    batch_size: 2
    save_every: 1
    progress: false
  dpo:
    method: dpo
    model: ${{sft.model}}
    data: {pairs}
    max_steps: 2
    batch_size: 2
    progress: false
  eval:
    command: eval
    data: {prompts}
    model: {{before: {model}, after: "${{dpo.model}}"}}
    judge: rule:{rules}:longer
    max_new_tokens: 4
    resamples: 20
    no_progress: true
"""
LONGER = "def longer(prompts, completions, **_):\n    return [float(len(c)) for c in completions]\n"


@pytest.fixture
def files(tmp_path: Path, tiny_model_dir: Path) -> dict[str, Path]:
    sft, pairs, prompts = tmp_path / "sft.jsonl", tmp_path / "pairs.jsonl", tmp_path / "prompts.jsonl"
    sft.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"answer {i}"}) + "\n" for i in range(6)))
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no no"}) + "\n"
                             for i in range(6)))
    prompts.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(3)))
    (tmp_path / "rules.py").write_text(LONGER)
    return {"model": tiny_model_dir, "sft": sft, "pairs": pairs, "prompts": prompts, "rules": tmp_path / "rules.py",
            "root": tmp_path}


def recipe(files: dict[str, Path], sft_steps: int = 3) -> Path:
    path = files["root"] / "recipe.yaml"
    path.write_text(RECIPE.format(sft_steps=sft_steps, **files))
    return path


def state(out: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((out / "recipe_state.json").read_text())["stages"]}


def test_a_recipe_runs_its_stages_into_their_dirs_with_lineage(files, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(recipe(files)), "--output-dir", str(out), "--no-report"]) == 0
    assert state(out) == {"sft": "done", "dpo": "done", "eval": "done"}
    dpo = json.loads((out / "dpo" / "lineage.json").read_text())
    assert dpo["config"]["model"] == str(out / "sft" / "model")  # ${sft.model} resolved
    assert [i["name"] for i in dpo["inputs"]] == ["${sft.model}", str(files["pairs"])]
    assert dpo["inputs"][0]["fingerprint"] == json.loads((out / "sft" / "lineage.json").read_text())["fingerprint"]
    assert json.loads((out / "dpo" / "run.json").read_text())["model"] == str(out / "sft" / "model")
    report = json.loads((out / "eval" / "report.json").read_text())
    assert [(p["model_a"], p["model_b"]) for p in report["pairs"]] == [("before", "after")]
    assert (out / "recipe.yaml").read_text() == recipe(files).read_text()


def test_rerun_skips_what_is_up_to_date_and_reruns_downstream_of_a_change(files, tmp_path, capsys):
    out = tmp_path / "out"
    path = recipe(files)
    assert main(["run", str(path), "--output-dir", str(out), "--no-report"]) == 0
    stamps = {s: (out / s / "lineage.json").stat().st_mtime_ns for s in ("sft", "dpo", "eval")}
    assert main(["run", str(path), "--output-dir", str(out), "--no-report"]) == 0
    assert state(out) == {"sft": "skipped", "dpo": "skipped", "eval": "skipped"}
    assert {s: (out / s / "lineage.json").stat().st_mtime_ns for s in stamps} == stamps
    # The DPO data changes: sft stays, dpo and (through ${dpo.model}) eval run again.
    files["pairs"].write_text(files["pairs"].read_text().replace("no no", "nope"))
    assert main(["run", str(path), "--output-dir", str(out), "--no-report"]) == 0
    assert state(out) == {"sft": "skipped", "dpo": "done", "eval": "done"}
    # --from reruns that stage and the later ones even when up to date.
    assert main(["run", str(path), "--output-dir", str(out), "--no-report", "--from", "dpo"]) == 0
    assert state(out) == {"sft": "skipped", "dpo": "done", "eval": "done"}
    said = capsys.readouterr()
    assert "running anew (--from)" in said.out + said.err


def test_an_interrupted_training_stage_resumes_from_its_checkpoint(files, tmp_path):
    out = tmp_path / "out"
    path = recipe(files, sft_steps=4)
    env = {**os.environ, "BRIDLE_FAULT_KILL_AT_STEP": "2"}  # the engine SIGKILLs itself after step 2
    killed = subprocess.run([sys.executable, "-m", "bridle.cli.main", "run", str(path), "--output-dir", str(out),
                             "--no-report"], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0
    assert state(out)["sft"] == "running" and (out / "sft" / "checkpoints").is_dir()
    done = subprocess.run([sys.executable, "-m", "bridle.cli.main", "run", str(path), "--output-dir", str(out),
                           "--no-report"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming (it was interrupted)" in done.stdout + done.stderr
    assert "resumed from" in done.stdout + done.stderr and "at step 2/4" in done.stdout + done.stderr
    assert state(out) == {"sft": "done", "dpo": "done", "eval": "done"}
    assert json.loads((out / "sft" / "run.json").read_text())["steps"] == 4


def test_an_invalid_recipe_fails_before_anything_runs(files, tmp_path, capsys):
    path = recipe(files)
    path.write_text(path.read_text().replace("judge:", "judg:"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--output-dir", str(out)]) == 2
    assert "no flag --judg" in capsys.readouterr().err and not out.exists()


def test_a_stage_whose_run_finished_but_whose_lineage_did_not_is_not_trained_again(files, tmp_path):
    out = tmp_path / "out"
    path = recipe(files)
    assert main(["run", str(path), "--output-dir", str(out), "--no-report"]) == 0
    lineage = out / "sft" / "lineage.json"
    record = json.loads(lineage.read_text())
    lineage.write_text(json.dumps({**record, "status": "running"}))  # as if killed right after training ended
    model_files = {p: p.stat().st_mtime_ns for p in (out / "sft" / "model").iterdir()}
    assert main(["run", str(path), "--output-dir", str(out), "--no-report"]) == 0
    assert state(out)["sft"] == "done"
    assert {p: p.stat().st_mtime_ns for p in (out / "sft" / "model").iterdir()} == model_files
