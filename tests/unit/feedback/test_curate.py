"""`bridle curate`'s pipeline on pools small enough to decide by hand: which rows each stage drops and why, every
option that changes the subset, scores journaled and resumed after a kill, the subset written as the input rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bridle.errors import ConfigError, DataError
from bridle.feedback import curate
from bridle.feedback.curate import (
    Candidate,
    Options,
    ScoreSource,
    TokenCounter,
    curate_files,
    length_reasons,
    select,
)
from bridle.feedback.judges import Grade


def answer(n: int) -> str:
    """An answer of exactly n characters ("abcd abcd ..."): its words are ceil(n / 5)."""
    return ("abcd " * 40)[:n]


# (prompt, answer characters). Prompt characters: 36, 42, 30, 26, 28, 37.
POOL = [("Give three tips for staying healthy.", 60),          # r1: near duplicate of r2 (trigram Jaccard 4/5)
        ("Give three tips for staying healthy today!", 80),    # r2: the better of the two (score 80 > 60)
        ("What is the capital of France?", 6),                 # r3: answer too short for min_answer_chars 10
        ("Name three primary colors.", 40),                    # r4
        ("Write a haiku about the sea.", 50),                  # r5
        ("Write a haiku about the sea at night.", 30)]         # r6: Jaccard 4/6 with r5, below 0.7


def write_pool(path: Path) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "completion": answer(n)}) + "\n" for p, n in POOL))
    return path


def decisions(report: dict) -> dict[str, tuple[str, str]]:
    """{"r1": (reason, detail)} for the rows of POOL."""
    return {f"r{r['row']}": (r["reason"], r["detail"]) for r in report["rows"]}


def kept(report: dict) -> set[str]:
    return {f"r{r['row']}" for r in report["rows"] if r["kept"]}


def run(tmp_path: Path, name: str = "out", **options) -> dict:
    options = {"size": 2, "bounds": {"min_answer_chars": 10}, "clusters": 1, **options}
    return curate_files([str(write_pool(tmp_path / "pool.jsonl"))], tmp_path / name, Options(**options))


# ---- the six-row pool, stage by stage ------------------------------------------------------------------------

def test_six_row_pool_each_stage_by_hand(tmp_path):
    report = run(tmp_path)
    why = decisions(report)
    assert why["r3"] == ("answer too short", "answer is 6 chars, below --min-answer-chars 10")
    assert why["r1"][0] == "near duplicate"
    assert why["r1"][1] == f"prompt Jaccard 0.80 with {tmp_path / 'pool.jsonl'}:2 (score 80 vs 60)"
    assert kept(report) == {"r2", "r5"}  # the two best by length among r2, r4, r5, r6
    assert why["r4"][0] == why["r6"][0] == "lower score in its cluster"
    assert why["r4"][1] == "cluster 0: rank 3 of 4 by score, 2 kept"
    assert report["counts"] == {"lower score in its cluster": 2, "kept": 2, "near duplicate": 1,
                                "answer too short": 1}
    assert report["rows"][0]["duplicate_of"] == f"{tmp_path / 'pool.jsonl'}:2"
    written = [json.loads(line) for line in (tmp_path / "out" / "curated.jsonl").read_text().splitlines()]
    assert written == [{"prompt": POOL[1][0], "completion": answer(80)},
                       {"prompt": POOL[4][0], "completion": answer(50)}]
    assert not (tmp_path / "out" / "scores.jsonl").exists()  # length scores are not journaled


def test_size_changes_how_many_are_kept(tmp_path):
    assert kept(run(tmp_path, size=3)) == {"r2", "r5", "r4"}
    assert kept(run(tmp_path, "all", size=10)) == {"r2", "r5", "r4", "r6"}  # fewer survivors than asked: all


def test_dedup_threshold_and_no_dedup_change_the_duplicates(tmp_path):
    assert kept(run(tmp_path, size=4)) == {"r2", "r4", "r5", "r6"}
    lower = run(tmp_path, "lower", size=4, dedup_threshold=0.6)  # now r6 (30) duplicates r5 (50): 4/6 ≥ 0.6
    assert kept(lower) == {"r2", "r4", "r5"}
    assert decisions(lower)["r6"][1].startswith("prompt Jaccard 0.67 with ")
    higher = run(tmp_path, "higher", dedup_threshold=0.85)  # 0.8 < 0.85: r1 is no longer a duplicate
    assert kept(higher) == {"r2", "r1"} and decisions(higher)["r1"][0] == "kept"
    off = run(tmp_path, "off", dedup_threshold=None)
    assert kept(off) == {"r2", "r1"} and "near duplicate" not in off["counts"]


def test_shingle_size_changes_what_counts_as_a_duplicate(tmp_path):
    # with 1-word shingles r5 and r6 share 6 of 8 words: 0.75 ≥ 0.7 (trigrams: 4/6 < 0.7)
    report = run(tmp_path, size=4, shingle_size=1)
    assert decisions(report)["r6"][0] == "near duplicate" and kept(report) == {"r2", "r4", "r5"}


def candidates() -> list[Candidate]:
    return [Candidate(f"r{i}", "pool", i, None, p, answer(n), {}) for i, (p, n) in enumerate(POOL, start=1)]


@pytest.mark.parametrize(("bound", "value", "dropped"), [
    ("min_prompt_chars", 30, {"r4": "prompt too short", "r5": "prompt too short"}),
    ("max_prompt_chars", 36, {"r2": "prompt too long", "r6": "prompt too long"}),
    ("min_answer_chars", 35, {"r3": "answer too short", "r6": "answer too short"}),
    ("max_answer_chars", 70, {"r2": "answer too long"}),
    # tokens counted here as words: answers have 12, 16, 2, 8, 10, 6; prompts 6, 7, 6, 4, 6, 8; an example is both
    ("min_answer_tokens", 8, {"r3": "answer too short", "r6": "answer too short"}),
    ("max_answer_tokens", 12, {"r2": "answer too long"}),
    ("max_tokens", 17, {"r1": "too many tokens", "r2": "too many tokens"}),  # totals 18, 23, 8, 12, 16, 14
    ("max_tokens", 0, {}),  # 0 is no bound
])
def test_each_length_bound_drops_the_rows_outside_it(bound, value, dropped):
    pool = candidates()
    words = TokenCounter(lambda text: len(text.split()), lambda prompt, answer: len(f"{prompt} {answer}".split()))
    found = length_reasons(pool, {bound: value}, words)
    assert {pool[i].id: d.reason for i, d in found.items()} == dropped
    flag = "--" + bound.replace("_", "-")
    assert all(flag in d.detail for d in found.values())


def test_the_first_bound_broken_is_the_reason_and_token_bounds_need_a_tokenizer():
    found = length_reasons(candidates(), {"min_answer_chars": 10, "min_prompt_chars": 31})
    assert found[2].detail == "prompt is 30 chars, below --min-prompt-chars 31"  # r3 breaks both: prompt first
    with pytest.raises(ConfigError, match="tokenizer"):
        length_reasons(candidates(), {"max_tokens": 5})


# ---- score sources -------------------------------------------------------------------------------------------

def test_score_none_keeps_input_order_and_the_earlier_duplicate(tmp_path):
    report = curate_files([str(write_pool(tmp_path / "pool.jsonl"))], tmp_path / "out",
                          Options(size=2, bounds={"min_answer_chars": 10}, clusters=1), score="none")
    assert kept(report) == {"r1", "r4"}  # equal scores: input order; r2 now duplicates r1
    assert decisions(report)["r2"][0] == "near duplicate"


class GradingBackend:
    """An LLM judge backend that grades by the answer it is shown: `grades[answer chars]` is its reply."""

    can_prefill = False

    def __init__(self, grades: dict[int, str]) -> None:
        self.grades, self.seen = grades, []

    def generate(self, conversations, max_new_tokens, prefixes=None):
        replies = []
        for c in conversations:
            shown = re.search(r"### Answer\n(.*?)\n### End of answer", c[-1]["content"], re.DOTALL).group(1)
            self.seen.append(len(shown))
            replies.append(self.grades[len(shown)])
        return replies


def test_judge_score_grades_each_answer_and_drops_unreadable_grades(tmp_path, monkeypatch):
    backend = GradingBackend({60: "Fine.\nRating: [[7]]", 80: "Rating: [[2]]", 40: "no idea", 50: "Rating: [[8]]",
                              30: "Rating: [[9]]"})
    monkeypatch.setattr("bridle.feedback.judge_spec.build_backend", lambda spec, **kw: backend)
    report = curate_files([str(write_pool(tmp_path / "pool.jsonl"))], tmp_path / "out",
                          Options(size=2, bounds={"min_answer_chars": 10}, clusters=1), score="judge:local")
    assert sorted(backend.seen) == [30, 40, 50, 60, 80]  # r3, dropped for its length, is never judged
    why = decisions(report)
    assert why["r4"][0] == "unscored" and report["score"]["unparsed"] == 1
    assert why["r2"][0] == "near duplicate" and "(score 7 vs 2)" in why["r2"][1]  # the judge prefers r1 now
    assert kept(report) == {"r6", "r5"}  # grades 9 and 8
    journal = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert sorted((r["score"] is None, r["raw"]) for r in journal)[-1] == (True, "no idea")


def test_rule_score_and_unknown_specs():
    source = curate.build_score_source("rule:length_limit")
    grades = source.grade(["q", "q"], ["one two", "w " * 250])
    assert [g.score for g in grades] == [0.0, -0.25] and source.journaled  # (250 − 200) / 200 words over
    for spec in ("bogus", "rm:", "judge:", "rule"):
        with pytest.raises(ConfigError, match="--score is one of"):
            curate.build_score_source(spec)


# ---- clusters and seed ---------------------------------------------------------------------------------------

def topical(prompts: list[str]) -> list[Candidate]:
    return [Candidate(f"t{i}", "pool", i, None, p, "an answer", {}) for i, p in enumerate(prompts)]


def test_clusters_spread_the_picks_over_topics():
    pool = topical(["cats purr softly", "cats purr loudly", "file income taxes", "file property taxes"])
    scores = [10.0, 9.0, 2.0, 1.0]
    one = select(pool, scores, Options(size=2, clusters=1))
    two = select(pool, scores, Options(size=2, clusters=2))
    assert [d.kept for d in one.decisions] == [True, True, False, False]  # the best two: both about cats
    assert [d.kept for d in two.decisions] == [True, False, True, False]  # the best of each topic
    assert sorted(two.cluster_sizes) == [2, 2] and two.decisions[1].reason == "lower score in its cluster"


def test_seed_draws_the_first_center_and_so_the_clusters():
    # three topics with no word in common; two clusters: the first center's topic, and the farthest row's (the
    # lowest index at distance 1). The third topic ties at distance 1 and joins the first center's cluster.
    pool = topical(["red apples grow", "red apples fall", "blue whales sing", "blue whales dive",
                    "quiet libraries open", "quiet libraries close"])
    scores = [10.0, 9.0, 8.0, 7.0, 100.0, 1.0]
    outcomes = set()
    for seed in range(12):  # seed 11 draws row 0 first, seeds 0-10 rows 2-5
        first = int(np.random.default_rng(seed).integers(6))
        chosen = select(pool, scores, Options(size=2, clusters=2, seed=seed)).decisions
        picked = {i for i, d in enumerate(chosen) if d.kept}
        # first in apples: clusters {apples, libraries}, {whales} → 4 and 2; else the apples are alone → 4 and 0
        assert picked == ({4, 2} if first in (0, 1) else {4, 0}), seed
        outcomes.add(frozenset(picked))
    assert len(outcomes) == 2  # the seed changed the subset


# ---- scores journaled, resumed after a kill ------------------------------------------------------------------

class Counting:
    """A scorer (answer characters) that records every call and raises on call `fail_on`, as a killed run would."""

    def __init__(self, fail_on: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, prompts, answers):
        self.calls.append(list(answers))
        if len(self.calls) == self.fail_on:
            raise RuntimeError("killed")
        return [Grade(float(len(a)), f"len {len(a)}") for a in answers]


def test_a_killed_run_resumes_and_scores_only_the_rest(tmp_path):
    pool = [str(write_pool(tmp_path / "pool.jsonl"))]
    options = Options(size=2, bounds={"min_answer_chars": 10}, clusters=1)
    killed = Counting(fail_on=2)
    with pytest.raises(RuntimeError, match="killed"):
        curate_files(pool, tmp_path / "out", options, batch_size=2, source=ScoreSource("scripted", killed, True))
    journal = tmp_path / "out" / "scores.jsonl"
    assert len(journal.read_text().splitlines()) == 2  # the first chunk was written before the kill
    with journal.open("a") as handle:
        handle.write('{"key": "abc", "sco')  # a line torn by the kill
    rerun = Counting()
    report = curate_files(pool, tmp_path / "out", options, batch_size=2, source=ScoreSource("scripted", rerun, True))
    first_chunk = set(killed.calls[0])
    assert [len(c) for c in rerun.calls] == [2, 1]  # 5 rows to score, 2 done: the other 3 only
    assert set(sum(rerun.calls, [])) == {answer(n) for n in (80, 60, 40, 50, 30)} - first_chunk
    assert (report["score"]["computed"], report["score"]["resumed"], report["score"]["torn_journal_lines"]) == (3, 2, 1)
    whole = curate_files(pool, tmp_path / "whole", options, source=ScoreSource("scripted", Counting(), True))
    assert report["rows"] == whole["rows"]  # the same decisions as a run never killed
    again = Counting()
    curate_files(pool, tmp_path / "out", options, source=ScoreSource("scripted", again, True))
    assert again.calls == []  # everything is in the journal
    curate_files(pool, tmp_path / "out", options, source=ScoreSource("scripted", again, True), rescore=True)
    assert len(sum(again.calls, [])) == 5


def test_rows_identical_in_content_are_scored_once_and_a_changed_row_again(tmp_path):
    data = tmp_path / "pool.jsonl"
    rows = [{"prompt": "Say hi.", "completion": "Hi there!"}] * 3 + [{"prompt": "Count.", "completion": "1 2 3"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scorer = Counting()
    report = curate_files([str(data)], tmp_path / "out", Options(size=4), source=ScoreSource("s", scorer, True))
    assert sum(scorer.calls, []) == ["Hi there!", "1 2 3"]
    assert report["counts"] == {"kept": 2, "near duplicate": 2}
    data.write_text(json.dumps({"prompt": "Say hi.", "completion": "Hello!"}) + "\n")
    curate_files([str(data)], tmp_path / "out", Options(size=4), source=ScoreSource("s", scorer, True))
    assert scorer.calls[-1] == ["Hello!"]


# ---- input and output shapes, bad rows, the report ------------------------------------------------------------

def test_subset_is_written_as_the_input_rows_and_self_instruct_keeps_its_chosen_instances(tmp_path):
    alpaca = {"instruction": "Name a planet orbiting the sun.", "input": "", "output": "Mars, the red planet.",
              "text": "kept as is"}
    chat = {"messages": [{"role": "user", "content": "Why is grass green today?"},
                         {"role": "assistant", "content": "Chlorophyll absorbs red and blue light."}]}
    task = {"id": "seed_task_1", "instruction": "Classify the sentiment of the review.",
            "instances": [{"input": "Loved every minute of the film.", "output": "positive"},
                          {"input": "Dull plot and wooden acting.", "output": "x"},
                          {"input": "The soundtrack alone makes it worth watching twice.", "output": "positive!"}]}
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (alpaca, chat, task)))
    report = curate_files([str(data)], tmp_path / "out", Options(size=10, bounds={"min_answer_chars": 2}))
    assert [r["id"] for r in report["rows"] if not r["kept"]] == [f"{data}:3[1]"]  # the answer "x" is too short
    written = [json.loads(line) for line in (tmp_path / "out" / "curated.jsonl").read_text().splitlines()]
    assert written == [alpaca, chat, {**task, "instances": [task["instances"][0], task["instances"][2]]}]


def test_bad_rows_stop_the_run_naming_file_row_and_field_or_are_listed_when_skipped(tmp_path):
    data = write_pool(tmp_path / "pool.jsonl")
    with data.open("a") as handle:
        handle.write(json.dumps({"prompt": "Empty answer?", "completion": ""}) + "\nnot json\n")
    with pytest.raises(DataError, match=r'pool.jsonl, row 7: field "completion" is empty') as error:
        curate_files([str(data)], tmp_path / "out", Options(size=2))
    assert "--on-bad-row skip" in str(error.value)
    report = curate_files([str(data)], tmp_path / "out", Options(size=2), on_bad_row="skip")
    bad = [r for r in report["rows"] if r["reason"] == "bad row"]
    assert [r["row"] for r in bad] == [7, 8] and 'field "completion" is empty' in bad[0]["detail"]
    assert report["bad_rows"] == 2 and report["counts"]["bad row"] == 2 and report["pool"] == 6


def test_options_are_checked_with_the_flag_to_change():
    for options, flag in ((Options(size=0), "--size"), (Options(size=1, dedup_threshold=1.5), "--dedup-threshold"),
                          (Options(size=1, clusters=-1), "--clusters"), (Options(size=1, bounds={"max_answer": 3}),
                                                                         "length bound")):
        with pytest.raises(ConfigError, match=flag):
            options.check()


def test_report_counts_every_row_once_and_prints_a_table(tmp_path):
    report = run(tmp_path)
    assert sum(report["counts"].values()) == len(report["rows"]) == 6
    assert report["clusters"] == [{"cluster": 0, "center": report["clusters"][0]["center"], "size": 4, "kept": 2}]
    assert report["score"]["mean_kept"] == pytest.approx((80 + 50) / 2)
    console = Console(record=True, width=120)
    curate.print_report(report, console)
    text = console.export_text()
    assert "kept 2 of 6 examples" in text and "near duplicate" in text and "clusters: 1" in text
    assert "note" not in text
    curate.print_report({**report, "kept": 1, "score": {**report["score"], "unparsed": 3}}, console)
    text = console.export_text()
    assert "3 judge replies held no readable grade" in text and "only 1 rows passed" in text
