"""`bridle constitute` end to end on tiny random models: the files, the flags that change them, errors, resuming, and
the outputs training as they are with `bridle sft`, `bridle dpo` and `bridle rm`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridle.cli.main import main
from bridle.feedback.constitute import pick_principle
from bridle.models import save_tiny_model

PROMPTS = ["Say hi.", "Name a fruit.", "What is 2+2?", "Tell me a joke."]
CONSTITUTION = """\
name: tiny
principles:
  - name: kind
    critique_request: Is it unkind?
    revision_request: Make it kind.
  - name: honest
    critique_request: Is it false?
    revision_request: Make it true.
  - name: short
    critique_request: Is it long?
    revision_request: Make it short.
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("constitute")
    data = tmp / "prompts.jsonl"
    rows = [{"prompt": p} for p in PROMPTS]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = tmp / "with_bad_row.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"oops": 1}) + "\n" + json.dumps(rows[1]) + "\n")
    constitution = tmp / "tiny.yaml"
    constitution.write_text(CONSTITUTION)
    return {"policy": save_tiny_model(tmp / "policy", seed=1), "critic": save_tiny_model(tmp / "critic", seed=2),
            "data": data, "bad": bad, "constitution": constitution}


def constitute(setup: dict[str, Path], out: Path, *extra: str, data: str = "data") -> dict:
    flags = ["constitute", "--model", str(setup["policy"]), "--data", str(setup[data]), "--constitution",
             str(setup["constitution"]), "--max-new-tokens", "8", "--temperature", "1.0", "--batch-size", "2",
             "--output-dir", str(out), "--no-progress", *extra]  # sampled: the tiny greedy model only says "\n"
    assert main(flags) == 0
    return json.loads((out / "report.json").read_text())


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_constitute_writes_traces_sft_and_preference_rows_that_train_as_they_are(setup, tmp_path, capsys):
    out = tmp_path / "cai"
    report = constitute(setup, out, "--rounds", "2")
    traces = rows(out / "trace.jsonl")
    assert [t["prompt"] for t in traces] == PROMPTS and all(len(t["rounds"]) == 2 for t in traces)
    for t in traces:
        first, second = t["rounds"]
        assert first["answer"] == t["original"]
        assert second["answer"] == (first["revision"] if first["kept"] else t["original"])
    sft, prefs = rows(out / "sft.jsonl"), rows(out / "preferences.jsonl")
    assert report["prompts"] == 4 and report["sft_rows"] == len(sft) > 0 and report["preference_rows"] == len(prefs)
    assert report["revisions_kept"] + sum(report["revisions_refused"].values()) == 8
    final = {t["prompt_index"]: t["final"] for t in traces}
    assert all(r["completion"] == final[r["prompt_index"]] for r in sft)
    assert len(prefs) > 0 and all(r["chosen"] == final[r["prompt_index"]] != r["rejected"] for r in prefs)
    assert "SFT rows" in capsys.readouterr().out
    common = ["--model", str(setup["policy"]), "--max-length", "128", "--batch-size", "2", "--max-steps", "2",
              "--log-every", "1", "--no-progress"]
    for command, data in (("sft", "sft.jsonl"), ("dpo", "preferences.jsonl"), ("rm", "preferences.jsonl")):
        run = tmp_path / command
        assert main([command, "--data", str(out / data), "--output-dir", str(run), *common]) == 0, command
        logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert any("loss" in r for r in logged), command


def test_seed_picks_the_principles_and_critic_model_writes_the_critiques(setup, tmp_path):
    names = ["kind", "honest", "short"]
    base = tmp_path / "base"
    constitute(setup, base, "--seed", "3")
    critic = tmp_path / "critic"
    constitute(setup, critic, "--seed", "3", "--critic-model", str(setup["critic"]))
    other_seed = tmp_path / "seed4"
    constitute(setup, other_seed, "--seed", "4")
    for out, seed in ((base, 3), (critic, 3), (other_seed, 4)):
        drawn = [t["rounds"][0]["principle"] for t in rows(out / "trace.jsonl")]
        assert drawn == [names[pick_principle(3, i, 1, seed)] for i in range(4)], out.name
    assert [t["rounds"][0]["principle"] for t in rows(base / "trace.jsonl")] != \
        [t["rounds"][0]["principle"] for t in rows(other_seed / "trace.jsonl")]
    plain, judged = rows(base / "trace.jsonl"), rows(critic / "trace.jsonl")
    assert [t["original"] for t in plain] == [t["original"] for t in judged]  # the policy still answers
    assert [t["rounds"][0]["critique"] for t in plain] != [t["rounds"][0]["critique"] for t in judged]
    settings = json.loads((critic / "settings.json").read_text())
    assert settings["critic_model"] == str(setup["critic"]) and settings["model"] == str(setup["policy"])


def test_a_rerun_extends_a_run_and_matches_one_done_at_once(setup, tmp_path):
    whole = tmp_path / "whole"
    constitute(setup, whole)
    grown = tmp_path / "grown"
    constitute(setup, grown, "--limit", "2")
    assert len(rows(grown / "trace.jsonl")) == 2
    report = constitute(setup, grown)
    assert report["resumed_prompts"] == 2 and report["generated_prompts"] == 2
    for name in ("trace.jsonl", "sft.jsonl", "preferences.jsonl"):
        assert (grown / name).read_text() == (whole / name).read_text(), name


def test_changed_settings_are_refused_by_name(setup, tmp_path, capsys):
    out = tmp_path / "run"
    constitute(setup, out, "--limit", "1")
    flags = ["constitute", "--model", str(setup["policy"]), "--data", str(setup["data"]), "--constitution",
             str(setup["constitution"]), "--output-dir", str(out), "--no-progress", "--max-new-tokens", "8"]
    assert main([*flags, "--rounds", "2"]) == 2
    err = capsys.readouterr().err
    assert "rounds 1 → 2" in err and "--overwrite" in err
    assert main([*flags, "--rounds", "2", "--overwrite", "--limit", "1"]) == 0
    assert len(rows(out / "trace.jsonl")[0]["rounds"]) == 2


def test_bad_prompt_rows_are_skipped_and_counted_when_asked(setup, tmp_path, capsys):
    flags = ["constitute", "--model", str(setup["policy"]), "--data", str(setup["bad"]), "--output-dir",
             str(tmp_path / "x"), "--no-progress", "--max-new-tokens", "4"]
    assert main(flags) == 2
    assert "row 2" in capsys.readouterr().err
    report = constitute(setup, tmp_path / "y", "--on-bad-row", "skip", data="bad")
    assert report["prompts"] == 2 and "1 skipped" in report["data_report"]


def test_a_bad_constitution_is_refused_with_its_file_and_line(setup, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONSTITUTION.replace("    revision_request: Make it true.", "    revision: Make it true."))
    flags = ["constitute", "--model", str(setup["policy"]), "--data", str(setup["data"]), "--constitution", str(bad),
             "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 8: principle 2: unknown key 'revision'" in err and "did you mean 'revision_request'" in err
    assert not (tmp_path / "out").exists()  # refused before anything is loaded or written
