"""`bridle rlaif` end to end on tiny random models: candidates, judged pairs, rows that `bridle dpo` trains on,
resume through the CLI, clear errors; and direct RLAIF (`--reward judge:...`) in a GRPO run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from bridle.cli.main import main
from bridle.models import save_tiny_model

PROMPTS = ["Say hi.", "Name a fruit.", "What is 2+2?", "Tell me a joke.", "Name a color.", "Count to three."]
# A rule that tells random answers apart: the sum of their characters' code points (higher wins).
RULE = "def ords(prompts, completions, **_):\n    return [float(sum(map(ord, c))) for c in completions]\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("rlaif")
    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps({"instruction": p, "input": "", "output": "ok"}) + "\n" for p in PROMPTS))
    (tmp / "rules.py").write_text(RULE)
    return {"policy": save_tiny_model(tmp / "policy", seed=1), "judge": save_tiny_model(tmp / "judge", seed=2),
            "data": data, "rule": tmp / "rules.py"}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDLE_CACHE", str(tmp_path / "bridle-cache"))


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rlaif(setup: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["rlaif", "--data", str(setup["data"]), "--policy", str(setup["policy"]), "--output-dir", str(out),
                 "--max-new-tokens", "8", "--no-progress", *extra])


def test_rule_judged_pairs_are_the_higher_scoring_candidate_and_dpo_and_rm_train_on_them(setup, tmp_path, capsys):
    out = tmp_path / "labels"
    assert rlaif(setup, out, "--k", "3", "--judge", f"rule:{setup['rule']}:ords") == 0
    judgements, pairs = jsonl(out / "judgements.jsonl"), jsonl(out / "pairs.jsonl")
    assert [j["prompt"] for j in judgements] == PROMPTS and all(len(j["candidates"]) == 3 for j in judgements)
    want = []  # by hand: every pair of distinct candidates, the higher code-point sum chosen, equal sums dropped
    for j in judgements:
        for a, b in itertools.combinations(j["candidates"], 2):
            score_a, score_b = sum(map(ord, a)), sum(map(ord, b))
            if a != b and score_a != score_b:
                want.append((j["prompt"], *((a, b) if score_a > score_b else (b, a))))
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in pairs] == want and len(want) >= 12
    report = json.loads((out / "report.json").read_text())
    assert report["kept"] == len(want) and report["prompts"] == 6 and report["position_consistency"] is None
    printed = capsys.readouterr().out
    assert f"kept: {len(want)}" in printed and "bridle dpo --data" in printed

    run = tmp_path / "dpo"
    assert main(["dpo", "--model", str(setup["policy"]), "--data", str(out / "pairs.jsonl"), "--output-dir", str(run),
                 "--max-length", "96", "--batch-size", "2", "--lr", "1e-3", "--max-steps", "2", "--log-every", "1",
                 "--eval-fraction", "0", "--no-progress"]) == 0
    train = [r for r in jsonl(run / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in train] == [1, 2] and all(r["loss"] > 0 for r in train)
    assert (run / "model" / "config.json").is_file()
    rm = tmp_path / "rm"
    assert main(["rm", "--model", str(setup["policy"]), "--data", str(out / "pairs.jsonl"), "--output-dir", str(rm),
                 "--max-length", "96", "--batch-size", "2", "--max-steps", "2", "--eval-fraction", "0",
                 "--log-every", "1", "--no-progress"]) == 0
    assert [r["step"] for r in jsonl(rm / "metrics.jsonl") if "loss" in r] == [1, 2]


def test_local_judge_sees_both_orders_and_the_counts_add_up(setup, tmp_path):
    out = tmp_path / "labels"
    assert rlaif(setup, out, "--k", "3", "--limit", "3", "--judge", f"local:{setup['judge']}", "--ties",
                 "probability") == 0
    report, judgements = json.loads((out / "report.json").read_text()), jsonl(out / "judgements.jsonl")
    judged = [p for j in judgements for p in j["pairs"]]
    assert all(len(p["verdicts"]) == 2 and len(p["probabilities"]) == 2 for p in judged)
    assert report["pairs_judged"] == len(judged) == 9 - report["identical"]
    assert report["kept"] + report["ties"] + report["unparsed_pairs"] == report["pairs_judged"]
    agree = [p["agreement"] for p in judged if None not in p["verdicts"]]
    assert report["position_consistency"] == pytest.approx(sum(agree) / len(agree))
    for row in jsonl(out / "pairs.jsonl"):
        pair = next(p for j in judgements if j["prompt_index"] == row["prompt_index"] for p in j["pairs"]
                    if {p["a"], p["b"]} == set(row["pair"]))
        # P(chosen ≻ rejected) from the two orders' label probabilities, read here by hand (a tie counts half)
        p_a = sum(o["A"] + o["tie"] / 2 for o in pair["probabilities"]) / 2
        assert row["probability"] == pytest.approx(p_a if row["pair"][0] == pair["a"] else 1 - p_a)
        assert row["probability"] > 0.5


def test_a_longer_limit_resumes_and_ends_as_one_run(setup, tmp_path, capsys):
    judge = ["--k", "3", "--judge", f"rule:{setup['rule']}:ords"]
    assert rlaif(setup, tmp_path / "whole", *judge) == 0
    assert rlaif(setup, tmp_path / "parts", *judge, "--limit", "2") == 0
    capsys.readouterr()
    assert rlaif(setup, tmp_path / "parts", *judge) == 0
    assert "(2 done before)" in capsys.readouterr().out
    for name in ("pairs.jsonl", "judgements.jsonl"):
        assert (tmp_path / "parts" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert rlaif(setup, tmp_path / "parts", "--k", "2", "--judge", f"rule:{setup['rule']}:ords") == 2
    assert "k: 3 then, 2 now" in capsys.readouterr().err


def test_a_row_without_a_prompt_is_named_by_file_and_row(setup, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi."}) + "\n" + json.dumps({"output": "no prompt"}) + "\n")
    assert main(["rlaif", "--data", str(data), "--policy", str(setup["policy"]), "--output-dir",
                 str(tmp_path / "o"), "--judge", f"rule:{setup['rule']}:ords", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{data}, row 2" in err and "no prompt" in err


def test_options_a_judge_cannot_serve_are_refused_before_sampling(setup, tmp_path, capsys):
    rule = f"rule:{setup['rule']}:ords"
    assert rlaif(setup, tmp_path / "a", "--judge", rule, "--min-confidence", "0.7") == 2
    assert "no preference probabilities" in capsys.readouterr().err
    assert rlaif(setup, tmp_path / "b", "--judge", rule, "--rationale") == 2
    assert "--rationale needs an LLM judge" in capsys.readouterr().err
    assert rlaif(setup, tmp_path / "c", "--judge", rule, "--k", "1") == 2
    assert "--k must be >= 2" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_grpo_trains_on_a_judge_reward(setup, tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": p, "answer": "ok"}) + "\n" for p in PROMPTS))
    out = tmp_path / "grpo"
    assert main(["grpo", "--model", str(setup["policy"]), "--data", str(data), "--output-dir", str(out),
                 "--reward", f"judge:reference=answer:local:{setup['judge']}", "--max-new-tokens", "4",
                 "--prompts-per-rollout", "2", "--num-samples", "2", "--batch-size", "4", "--grad-accum", "1",
                 "--max-steps", "1",
                 "--eval-fraction", "0", "--no-progress"]) == 0
    row = next(r for r in jsonl(out / "metrics.jsonl") if "loss" in r)
    assert 0 < row["reward/judge_reference"] < 1 and row["reward/mean"] == pytest.approx(row["reward/judge_reference"])
