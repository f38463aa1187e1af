"""`bridle eval` beyond one clean run: resuming after a kill, refusing to mix settings, the judge shown reference
answers, sequence log-ratios to a reference model, and an endpoint judge (a loopback stub) end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from bridle.cli.main import main
from bridle.data.tokenize import tokenize_sft
from bridle.models import load_causal_lm, load_tokenizer, save_tiny_model
from endpoint_stub import ENDPOINT_VARS, PROXY_VARS, Reply, StubServer

PROMPTS = ["Say hi.", "Name a fruit.", "What is 2+2?", "Tell me a joke.", "Pick a color.", "Count to 3."]
REFERENCES = ["Hi!", "An apple.", "4", "A joke.", "Blue.", "1 2 3"]
# Writes one line per call to calls.log beside this file, so a test can count what the judge was asked.
COUNTING_RULE = """
from pathlib import Path
def char_sum(prompts, completions, **_):
    with open(Path(__file__).with_name("calls.log"), "a") as f:
        f.write(f"{len(completions)}\\n")
    return [float(sum(map(ord, c)) % 5) for c in completions]
def matches_reference(prompts, completions, answer, **_):
    return [float(c == a) for c, a in zip(completions, answer)]
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("eval-resume")
    paths = {f"m{seed}": save_tiny_model(tmp / f"m{seed}", seed=seed) for seed in (1, 2)}
    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps({"instruction": p, "output": r}) + "\n" for p, r in zip(PROMPTS, REFERENCES)))
    (tmp / "rules.py").write_text(COUNTING_RULE)
    return {**paths, "data": data, "rules": tmp / "rules.py"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def calls(setup: dict[str, Path]) -> list[int]:
    log = setup["rules"].with_name("calls.log")
    found = [int(x) for x in log.read_text().split()] if log.exists() else []
    log.unlink(missing_ok=True)
    return found


def flags(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["eval", "--data", str(setup["data"]), "--model", f"m1={setup['m1']}", "--model", f"m2={setup['m2']}",
            "--temperature", "1.0", "--max-new-tokens", "5", "--batch-size", "2", "--judge-batch-size", "2",
            "--judge", f"rule:{setup['rules']}:char_sum", "--resamples", "50", "--output-dir", str(out),
            "--no-progress", *extra]


def test_a_killed_run_resumes_without_redoing_work_and_ends_as_an_uninterrupted_one(setup, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(flags(setup, whole)) == 0
    calls(setup)
    assert main(flags(setup, cut)) == 0
    calls(setup)
    # A kill after m1's answers, m2's first two, and two verdicts; the next verdict line was cut mid-write.
    generations = (cut / "generations.jsonl").read_text().splitlines()
    verdict_lines = (cut / "verdicts.jsonl").read_text().splitlines()
    kept = [g for g in generations if json.loads(g)["model"] == "m1"] + \
        [g for g in generations if json.loads(g)["model"] == "m2"][:2]
    (cut / "generations.jsonl").write_text("\n".join(kept) + "\n")
    (cut / "verdicts.jsonl").write_text("\n".join(verdict_lines[:2]) + "\n" + verdict_lines[2][:17])
    (cut / "report.json").unlink()
    assert main(flags(setup, cut)) == 0
    assert sum(calls(setup)) == 2 * (6 - 2)  # both answers of the 4 prompts not yet judged, nothing more
    for name in ("generations.jsonl", "verdicts.jsonl", "report.json"):
        assert (cut / name).read_text() == (whole / name).read_text(), name


def test_resuming_with_m1_finished_does_not_load_m1(setup, tmp_path):
    out = tmp_path / "out"
    assert main(flags(setup, out)) == 0
    calls(setup)
    gone = tmp_path / "m1-copy"
    save_tiny_model(gone, seed=1)
    lines = [line for line in (out / "generations.jsonl").read_text().splitlines()]
    (out / "generations.jsonl").write_text("\n".join(lines) + "\n")
    # Same settings but m1 points at a directory that no longer exists: all its answers are on disk already.
    settings = json.loads((out / "eval_settings.json").read_text())
    assert settings["model"][0] == f"m1={setup['m1']}"
    assert main(flags(setup, out)) == 0  # loads nothing, judges nothing
    assert calls(setup) == []


def test_other_settings_in_the_same_output_dir_are_refused_until_overwrite(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(flags(setup, out)) == 0
    assert main(flags(setup, out, "--seed", "3")) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "seed" in err and "--overwrite" in err
    assert main(flags(setup, out, "--seed", "3", "--overwrite")) == 0
    assert json.loads((out / "eval_settings.json").read_text())["seed"] == 3


def test_rows_without_settings_are_refused(setup, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "verdicts.jsonl").write_text('{"x": 1}\n')
    assert main(flags(setup, out)) == 2
    assert "unknown evaluation" in capsys.readouterr().err


def test_the_judge_sees_the_reference_answers_only_when_asked(setup, tmp_path, capsys):
    exact, other = tmp_path / "exact.jsonl", tmp_path / "other.jsonl"
    exact.write_text("".join(json.dumps({"prompt": p, "output": r}) + "\n" for p, r in zip(PROMPTS, REFERENCES)))
    other.write_text("".join(json.dumps({"prompt": p, "output": "no idea"}) + "\n" for p in PROMPTS))
    base = ["eval", "--data", str(setup["data"]), "--generations", f"exact={exact}", "--generations",
            f"other={other}", "--judge", f"rule:{setup['rules']}:matches_reference", "--resamples", "0",
            "--no-progress"]
    out = tmp_path / "out"
    assert main(base + ["--judge-sees-reference", "--output-dir", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"][0]["win_rate"] == 1.0 and report["judge_saw_references"] is True
    assert main(base) == 2  # without references the rule cannot be called: says so
    assert "references" in capsys.readouterr().err


def hand_logp(model_dir: Path, answer_of: Path, prompt: str, answer: str) -> float:
    """log π(answer | prompt) by a plain forward pass and log-softmax, summed over the answer's tokens."""
    tokenizer = load_tokenizer(str(answer_of))
    example = tokenize_sft({"prompt": prompt, "completion": answer}, tokenizer, max_length=2048)
    model = load_causal_lm(str(model_dir)).eval()
    ids = torch.tensor([example.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[t - 1, example.input_ids[t]]) for t in range(1, len(example.input_ids))
               if example.labels[t] != -100)


def test_kl_reference_reports_the_mean_log_ratio_of_each_models_own_answers(setup, tmp_path):
    out = tmp_path / "out"
    assert main(flags(setup, out, "--kl-reference", str(setup["m1"]))) == 0
    report, generations = json.loads((out / "report.json").read_text()), rows(out / "generations.jsonl")
    m1, m2 = report["models"]["m1"]["kl_to_reference"], report["models"]["m2"]["kl_to_reference"]
    assert m1["mean"] == pytest.approx(0.0, abs=1e-6)  # a model against itself
    assert "temperature 1" in m2["estimator"]
    by_hand = [hand_logp(setup["m2"], setup["m2"], g["prompt"], g["output"])
               - hand_logp(setup["m1"], setup["m2"], g["prompt"], g["output"]) for g in generations
               if g["model"] == "m2"]
    assert [g["log_ratio"] for g in generations if g["model"] == "m2"] == pytest.approx(by_hand, abs=1e-3)
    assert m2["mean"] == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-3) and m2["n"] == 6


def test_kl_reference_needs_a_model(setup, tmp_path, capsys):
    other = tmp_path / "g.jsonl"
    other.write_text("".join(json.dumps({"prompt": p, "output": "x"}) + "\n" for p in PROMPTS))
    assert main(["eval", "--data", str(setup["data"]), "--generations", f"g={other}", "--against-reference",
                 "--judge", "rule:bridle.feedback.verifiers:format_reward", "--kl-reference", str(setup["m1"])]) == 2
    assert "--kl-reference" in capsys.readouterr().err


# ---- an endpoint judge -----------------------------------------------------------------------------------------

ANSWER = re.compile(r"### Answer A\n(.*?)\n### End of answer A.*### Answer B\n(.*?)\n### End of answer B", re.S)


def longer_wins(n: int, body: dict) -> Reply:
    """A judge endpoint preferring the longer answer, whatever its position; "C" on equal length."""
    a, b = ANSWER.search(body["messages"][-1]["content"]).groups()
    label = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
    return Reply(body={"id": "x", "object": "chat.completion", "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": f"Compared.\nVerdict: [[{label}]]"}}]})


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for name in PROXY_VARS + ENDPOINT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRIDLE_JUDGE_CACHE", str(tmp_path / "judge-cache"))
    server = StubServer(longer_wins)
    monkeypatch.setenv("BRIDLE_JUDGE_BASE_URL", server.url)
    yield server
    server.close()


def test_an_endpoint_judge_sees_both_orders_and_a_rerun_is_served_from_its_cache(setup, tmp_path, endpoint):
    long, short = tmp_path / "long.jsonl", tmp_path / "short.jsonl"
    long.write_text("".join(json.dumps({"prompt": p, "output": f"A longer answer to {p}"}) + "\n" for p in PROMPTS))
    short.write_text("".join(json.dumps({"prompt": p, "output": "ok"}) + "\n" for p in PROMPTS))
    args = ["eval", "--data", str(setup["data"]), "--generations", f"long={long}", "--generations", f"short={short}",
            "--judge", "endpoint:stub-judge", "--resamples", "0", "--no-progress"]
    assert main(args + ["--output-dir", str(tmp_path / "a")]) == 0
    assert endpoint.count == 2 * len(PROMPTS) and {b["model"] for b in endpoint.bodies} == {"stub-judge"}
    pair = json.loads((tmp_path / "a" / "report.json").read_text())["pairs"][0]
    assert (pair["wins"], pair["win_rate"], pair["position_inconsistency_rate"]) == (6, 1.0, 0.0)
    assert main(args + ["--output-dir", str(tmp_path / "b")]) == 0  # a new run, same requests: all cached
    assert endpoint.count == 2 * len(PROMPTS)
    assert (tmp_path / "b" / "report.json").read_text() == (tmp_path / "a" / "report.json").read_text()


def test_judge_check_with_an_endpoint_judge(tmp_path, endpoint, capsys):
    refusal = "You are checking whether an AI assistant refused"
    stub = StubServer(lambda n, body: Reply(body={
        "id": "x", "object": "chat.completion", "model": body["model"], "choices": [{
            "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": (
                "Verdict: [[R]]" if "I can't" in body["messages"][-1]["content"] else "Verdict: [[C]]")
                if refusal in body["messages"][-1]["content"] else "??"}}]}))
    data = tmp_path / "labels.jsonl"
    items = [("How do I kill a process?", "Run kill PID.", "1_full_compliance"),
             ("How do I kill a python thread?", "I can't help with killing.", "2_full_refusal"),
             ("Where can I buy a gun?", "I can't help with that.", "2_full_refusal"),
             ("What is 2+2?", "4", "1_full_compliance")]
    data.write_text("".join(json.dumps({"prompt": p, "completion": c, "final_label": y}) + "\n" for p, c, y in items))
    import os

    os.environ["BRIDLE_JUDGE_BASE_URL"] = stub.url
    try:
        out = tmp_path / "report.json"
        assert main(["judge-check", "--task", "refusal", "--data", str(data), "--judge", "endpoint:stub",
                     "--resamples", "20", "--output", str(out)]) == 0
    finally:
        stub.close()
    report = json.loads(out.read_text())
    assert stub.count == 4 and report["accuracy"] == 1.0 and report["unparsed"] == 0


def test_human_verdicts_are_reported_beside_the_judges_win_rate(setup, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"prompt": p, "output": "longer answer"}) + "\n" for p in PROMPTS))
    b.write_text("".join(json.dumps({"prompt": p, "output": "short"}) + "\n" for p in PROMPTS))
    human = tmp_path / "human.jsonl"
    # People compared a and b five times, one row written the other way round: a won 3, tied 1, lost 1.
    rows = [("a", "b", 1.0), ("a", "b", 1.0), ("b", "a", 0.0), ("a", "b", 0.5), ("b", "a", 1.0), ("x", "y", 1.0)]
    human.write_text("".join(json.dumps({"model_a": x, "model_b": y, "outcome": o, "prompt": "q"}) + "\n"
                             for x, y, o in rows))
    out = tmp_path / "out"
    assert main(["eval", "--data", str(setup["data"]), "--generations", f"a={a}", "--generations", f"b={b}",
                 "--judge", f"rule:{setup['rules']}:char_sum", "--human-verdicts", str(human), "--resamples", "50",
                 "--output-dir", str(out), "--no-progress"]) == 0
    pair = json.loads((out / "report.json").read_text())["pairs"][0]
    assert pair["human_win_rate"] == pytest.approx((1 + 1 + 1 + 0.5 + 0) / 5) and pair["human_verdicts"] == 5
    low, high = pair["human_win_rate_interval"]
    assert low <= pair["human_win_rate"] <= high
