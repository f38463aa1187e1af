"""The critique → revision loop with scripted generators whose replies spell out what they were shown, so each test
can say by hand which principle was asked in which round, what was critiqued and what was revised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridle.errors import ConfigError, DataError
from bridle.feedback.constitute import (
    Settings,
    clean_revision,
    constitute_batch,
    degenerate_reason,
    outputs_of,
    pick_principle,
    run_constitute,
    summarize,
)
from bridle.feedback.constitution import Constitution, Principle

PRINCIPLES = tuple(Principle(f"p{i}", f"Critique by p{i}.", f"Revise by p{i}.") for i in range(4))
CONSTITUTION = Constitution("test", "", PRINCIPLES, "test.yaml", "text")
PROMPTS = ["q0", "q1", "q2", "q3", "q4"]


class Scripted:
    """Replies from the conversation alone: an answer "A(q)"; a critique "<name> on [answer] by pK"; a revision
    "Here is the revised response: R(answer|pK)", or a planted reply for a prompt ("<echo>": the request itself).
    `fail_after` raises on that call (a kill); `calls` counts conversations answered per step."""

    def __init__(self, name: str = "policy", *, fail_after: int | None = None,
                 revisions: dict[str, str] | None = None) -> None:
        self.name, self.fail_after, self.revisions = name, fail_after, revisions or {}
        self.calls: list[str] = []
        self.shown: list[list[dict]] = []

    def answers(self, prompts, *, n=1, **settings):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("killed")
        steps = []
        out = []
        for conv in prompts:
            self.shown.append(conv)
            last = conv[-1]["content"]
            if len(conv) == 1:
                steps.append("answer")
                out.append([f"A({last})"] * n)
            elif last.startswith("Critique by "):
                steps.append("critique")
                out.append([f"{self.name} on [{conv[-2]['content']}] by {last[12:-1]}"] * n)
            else:
                steps.append("revision")
                answer, principle = conv[-4]["content"], last[10:-1]
                planted = self.revisions.get(conv[0]["content"])
                out.append([last if planted == "<echo>" else planted if planted is not None
                            else f"Here is the revised response: R({answer}|{principle})"] * n)
        assert len(set(steps)) == 1, "one generate call is one step for the whole batch"
        self.calls.append(f"{steps[0]}:{len(prompts)}")
        return out


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def principle_of(index: int, round_number: int, seed: int = 0) -> str:
    return f"p{pick_principle(4, index, round_number, seed)}"


# ---- pure pieces ------------------------------------------------------------------------------------------------

def test_principle_draws_are_pinned_per_prompt_and_round_and_follow_the_seed():
    # Pinned (computed once): a change of RNG would silently change every rerun's principles.
    assert [[pick_principle(4, i, r, 0) for r in (1, 2, 3)] for i in range(3)] == [[3, 0, 1], [3, 1, 2], [1, 2, 3]]
    assert [[pick_principle(4, i, r, 1) for r in (1, 2, 3)] for i in range(3)] == [[1, 1, 2], [2, 3, 3], [0, 0, 1]]
    draws = [pick_principle(4, i, 1, 0) for i in range(4000)]
    assert all(900 < draws.count(k) < 1100 for k in range(4))  # uniform: 1000 expected each, sd ≈ 27


@pytest.mark.parametrize("raw, want", [
    ("Here is the revised response: I cannot help with that.", "I cannot help with that."),
    ("Here's a rewritten version of the reply:\n\nPlants need light.", "Plants need light."),
    ("Sure! Here is my revised answer:\n\"Use a timer.\"", "Use a timer."),
    ("**Revised response:** Water boils at 100 C.", "Water boils at 100 C."),
    ("Revision: Stay safe.", "Stay safe."),
    # seen from SmolLM2-135M: a long label line, then a quoted reply cut off by max tokens (its quote is kept)
    ("Here's a rewritten version of the response that avoids the law-breaking requirement:\n\n\"I'm sorry",
     "\"I'm sorry"),
    ("  “Quoted whole.”  ", "Quoted whole."),
    ('He said "hi" and "bye"', 'He said "hi" and "bye"'),  # inner quotes: not a wrapped reply
    ("Here is what I think: cats are great.", "Here is what I think: cats are great."),  # no revision label
    ("I revised nothing.\nHere is the revised response: x", "I revised nothing.\nHere is the revised response: x"),
])
def test_clean_revision_strips_only_labels_and_wrapping_quotes(raw, want):
    assert clean_revision(raw) == want


def test_degenerate_revisions_are_named():
    p = PRINCIPLES[0]
    assert degenerate_reason("", p, "c") == "empty"
    assert degenerate_reason(" ... ", p, "c") == "empty"
    assert degenerate_reason("revise BY p0", p, "c") == "copies the request"
    assert degenerate_reason("Critique by p0", p, "c") == "copies the request"
    assert degenerate_reason("The reply is rude.", p, "the reply is rude") == "copies the critique"
    assert degenerate_reason("no " * 30, p, "c") == "repetitive"
    assert degenerate_reason("no " * 19, p, "c") is None  # too short to call a loop
    assert degenerate_reason("A fine answer.", p, "c") is None


def test_outputs_of_a_trace():
    trace = {"prompt_index": 3, "prompt": "q", "original": "old", "final": "new", "revised": True, "rounds": []}
    assert outputs_of(trace) == ({"prompt_index": 3, "prompt": "q", "completion": "new"},
                                 {"prompt_index": 3, "prompt": "q", "chosen": "new", "rejected": "old"})
    assert outputs_of({**trace, "final": " old"}) == ({"prompt_index": 3, "prompt": "q", "completion": " old"}, None)
    assert outputs_of({**trace, "final": "old", "revised": False}) == (None, None)


# ---- the loop -------------------------------------------------------------------------------------------------

def test_each_round_critiques_and_revises_the_latest_revision_with_its_drawn_principle():
    policy = Scripted()
    rows = constitute_batch(list(enumerate(PROMPTS[:3])), policy, CONSTITUTION, Settings(rounds=2))
    # one call per step for the whole batch: answer, then (critique, revision) per round
    assert policy.calls == ["answer:3", "critique:3", "revision:3", "critique:3", "revision:3"]
    for i, row in enumerate(rows):
        p1, p2 = principle_of(i, 1), principle_of(i, 2)
        r1 = f"R(A(q{i})|{p1})"
        assert row["original"] == f"A(q{i})"
        assert [s["principle"] for s in row["rounds"]] == [p1, p2]
        assert row["rounds"][0]["critique"] == f"policy on [A(q{i})] by {p1}"
        assert row["rounds"][0]["revision"] == r1  # the label "Here is the revised response:" cleaned off
        assert row["rounds"][1]["answer"] == r1  # round 2 is shown round 1's revision ...
        assert row["rounds"][1]["critique"] == f"policy on [{r1}] by {p2}"  # ... critiques it ...
        assert row["final"] == f"R({r1}|{p2})"  # ... and revises it
        assert row["rounds"][1]["critique_request"] == f"Critique by {p2}."
        assert row["revised"] and all(s["kept"] for s in row["rounds"])
    # the revision conversation is the paper's: prompt, answer, critique request, critique, revision request
    last = policy.shown[-1]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[0]["content"] == "q2" and last[2]["content"].startswith("Critique by")


def test_the_seed_changes_the_principles_drawn():
    rows0 = constitute_batch(list(enumerate(PROMPTS)), Scripted(), CONSTITUTION, Settings(rounds=2, seed=0))
    rows1 = constitute_batch(list(enumerate(PROMPTS)), Scripted(), CONSTITUTION, Settings(rounds=2, seed=1))
    drawn0 = [[s["principle"] for s in r["rounds"]] for r in rows0]
    drawn1 = [[s["principle"] for s in r["rounds"]] for r in rows1]
    assert drawn0 == [[principle_of(i, 1, 0), principle_of(i, 2, 0)] for i in range(5)]
    assert drawn1 == [[principle_of(i, 1, 1), principle_of(i, 2, 1)] for i in range(5)]
    assert drawn0 != drawn1


def test_a_critic_model_writes_the_critiques_and_the_policy_the_rest():
    policy, critic = Scripted("policy"), Scripted("critic")
    rows = constitute_batch([(0, "q0"), (1, "q1")], policy, CONSTITUTION, Settings(rounds=1), critic=critic)
    assert policy.calls == ["answer:2", "revision:2"] and critic.calls == ["critique:2"]
    assert rows[0]["rounds"][0]["critique"] == f"critic on [A(q0)] by {principle_of(0, 1)}"
    assert rows[0]["final"] == f"R(A(q0)|{principle_of(0, 1)})"


def test_a_degenerate_revision_is_refused_counted_and_the_answer_kept():
    policy = Scripted(revisions={"q1": "Here is the revised response:   ", "q2": "<echo>"})
    rows = constitute_batch(list(enumerate(PROMPTS[:3])), policy, CONSTITUTION, Settings(rounds=2))
    assert rows[1]["final"] == "A(q1)" and not rows[1]["revised"]
    assert [s["refused_because"] for s in rows[1]["rounds"]] == ["empty", "empty"]
    assert rows[1]["rounds"][1]["answer"] == "A(q1)"  # round 2 critiques the answer that stood
    assert outputs_of(rows[1]) == (None, None)
    report = summarize(rows)
    assert report["revisions_kept"] == 2 and report["revisions_refused"] == {"empty": 2, "copies the request": 2}
    assert report["unrevised_prompts"] == 2 and report["sft_rows"] == 1 and report["preference_rows"] == 1


# ---- files, resume ----------------------------------------------------------------------------------------------

def run(out: Path, policy: Scripted, **kwargs) -> dict:
    settings = kwargs.pop("settings", Settings(rounds=2, batch_size=2))
    return run_constitute(kwargs.pop("prompts", PROMPTS), policy, CONSTITUTION, out, settings=settings, **kwargs)


def test_outputs_are_sft_preference_and_trace_rows(tmp_path):
    report = run(tmp_path, Scripted(revisions={"q3": ""}))
    traces, sft, prefs = read(tmp_path / "trace.jsonl"), read(tmp_path / "sft.jsonl"), \
        read(tmp_path / "preferences.jsonl")
    assert [t["prompt_index"] for t in traces] == [0, 1, 2, 3, 4]
    final = {t["prompt_index"]: t["final"] for t in traces}
    assert final[0] == f"R(R(A(q0)|{principle_of(0, 1)})|{principle_of(0, 2)})"
    assert sft == [{"prompt_index": i, "prompt": f"q{i}", "completion": final[i]} for i in (0, 1, 2, 4)]
    assert prefs == [{"prompt_index": i, "prompt": f"q{i}", "chosen": final[i], "rejected": f"A(q{i})"}
                     for i in (0, 1, 2, 4)]
    assert report["prompts"] == 5 and report["sft_rows"] == 4 and report["unrevised_prompts"] == 1
    assert report["revisions_refused"] == {"empty": 2} and report["generated_prompts"] == 5
    assert json.loads((tmp_path / "report.json").read_text())["preference_rows"] == 4
    assert sum(report["principles_drawn"].values()) == 10


def test_rounds_setting_reaches_the_files(tmp_path):
    run(tmp_path / "one", Scripted(), settings=Settings(rounds=1))
    run(tmp_path / "three", Scripted(), settings=Settings(rounds=3))
    assert [len(t["rounds"]) for t in read(tmp_path / "one" / "trace.jsonl")] == [1] * 5
    assert [len(t["rounds"]) for t in read(tmp_path / "three" / "trace.jsonl")] == [3] * 5
    assert read(tmp_path / "three" / "sft.jsonl")[0]["completion"].count("R(") == 3


def test_resume_after_a_kill_skips_finished_prompts_and_matches_an_uninterrupted_run(tmp_path):
    whole = tmp_path / "whole"
    run(whole, Scripted())
    cut = tmp_path / "cut"
    with pytest.raises(RuntimeError, match="killed"):
        run(cut, Scripted(fail_after=7))  # batch 1 (q0, q1) takes 5 calls; killed in batch 2's revision
    assert [t["prompt_index"] for t in read(cut / "trace.jsonl")] == [0, 1]
    again = Scripted()
    report = run(cut, again)
    # only q2..q4 are generated: batches (q2, q3) and (q4), 5 steps each
    assert again.calls == ["answer:2", "critique:2", "revision:2", "critique:2", "revision:2",
                           "answer:1", "critique:1", "revision:1", "critique:1", "revision:1"]
    assert report["resumed_prompts"] == 2 and report["generated_prompts"] == 3 and report["prompts"] == 5
    for name in ("trace.jsonl", "sft.jsonl", "preferences.jsonl"):
        assert (cut / name).read_text() == (whole / name).read_text(), name
    done = Scripted()
    run(cut, done)
    assert done.calls == []  # a finished run does nothing


def test_rows_lost_between_the_trace_and_its_outputs_are_restored_without_generating(tmp_path):
    run(tmp_path, Scripted())
    want = (tmp_path / "sft.jsonl").read_text(), (tmp_path / "preferences.jsonl").read_text()
    lines = want[0].splitlines(keepends=True)
    (tmp_path / "sft.jsonl").write_text("".join(lines[:-1]) + lines[-1][:10])  # killed mid-write
    (tmp_path / "preferences.jsonl").write_text("".join(want[1].splitlines(keepends=True)[:-2]))
    again = Scripted()
    report = run(tmp_path, again)
    assert again.calls == [] and report["torn_lines_dropped"] == 1
    assert ((tmp_path / "sft.jsonl").read_text(), (tmp_path / "preferences.jsonl").read_text()) == want


def test_a_torn_trace_line_is_redone(tmp_path):
    run(tmp_path, Scripted())
    text = (tmp_path / "trace.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    (tmp_path / "trace.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    for name in ("sft.jsonl", "preferences.jsonl"):  # the kill came before the outputs of prompt 4
        (tmp_path / name).write_text("".join((tmp_path / name).read_text().splitlines(keepends=True)[:-1]))
    again = Scripted()
    run(tmp_path, again)
    assert again.calls[0] == "answer:1" and (tmp_path / "trace.jsonl").read_text() == text


def test_a_rerun_with_other_settings_or_prompts_is_refused_and_overwrite_starts_again(tmp_path):
    run(tmp_path, Scripted())
    with pytest.raises(ConfigError, match="rounds 2 → 1"):
        run(tmp_path, Scripted(), settings=Settings(rounds=1, batch_size=2))
    with pytest.raises(ConfigError, match="seed 0 → 5"):
        run(tmp_path, Scripted(), settings=Settings(rounds=2, seed=5, batch_size=2))
    run(tmp_path / "m", Scripted(), run_info={"model": "a"})
    with pytest.raises(ConfigError, match="model a → b"):
        run(tmp_path / "m", Scripted(), run_info={"model": "b"})
    with pytest.raises(DataError, match="line 2 is not a trace of prompt 1 of this data: the prompts changed"):
        run(tmp_path, Scripted(), prompts=["q0", "changed", "q2", "q3", "q4"])
    with pytest.raises(DataError, match="line 4 is prompt 3, but only 3 prompts"):
        run(tmp_path, Scripted(), prompts=PROMPTS[:3])
    run(tmp_path, Scripted(), settings=Settings(rounds=2, batch_size=3))  # batch size may change on resume
    fresh = Scripted()
    run(tmp_path, fresh, settings=Settings(rounds=1), overwrite=True)
    assert fresh.calls[0] == "answer:5" and [len(t["rounds"]) for t in read(tmp_path / "trace.jsonl")] == [1] * 5


def test_settings_refuse_impossible_values():
    with pytest.raises(ConfigError, match="--rounds"):
        Settings(rounds=0)
    with pytest.raises(ConfigError, match="--top-p"):
        Settings(top_p=0)
