"""`bridle.feedback.rlaif`: position-debiased preference probabilities, the options that change which pairs become
rows (k, --min-confidence, --max-pairs-per-prompt, --ties), resume after a kill, and rows `bridle dpo` reads.

The policy and the judge are scripted: the policy returns fixed candidates per prompt, and the judge's label
probabilities are a table keyed by (answer shown first, answer shown second), so every expected value below is
worked out by hand from the tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bridle.data.formats import normalize
from bridle.data.prompts import PromptRow
from bridle.data.sources import load_rows
from bridle.errors import ConfigError
from bridle.feedback import rlaif
from bridle.feedback.journal import Journal
from bridle.feedback.judges import PairVerdict, PairwiseJudge, RuleJudge
from bridle.feedback.rlaif import PairFilter, Sampling, run_rlaif

_SHOWN = re.compile(r"### Answer A\n(.*?)\n### End of answer A.*### Answer B\n(.*?)\n### End of answer B", re.DOTALL)


class ScriptedPolicy:
    """Candidates from a table {prompt: [texts]}; the first n are returned. Records each call's prompts and seed."""

    def __init__(self, table: dict[str, list[str]], *, fail_on_call: int | None = None) -> None:
        self.table, self.fail_on_call, self.calls = table, fail_on_call, []

    def answers(self, prompts, *, n, seed, **_):
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise KeyboardInterrupt("killed")  # what a kill looks like from inside the loop
        self.calls.append((list(prompts), seed))
        return [self.table[p][:n] for p in prompts]


class TableBackend:
    """A prefilled local judge whose label probabilities are `table[(shown first, shown second)]`; a pair missing
    from the table reads as "first shown wins, 0.6 / 0.3 / 0.1" (pure position bias). Counts what it judged."""

    can_prefill = True

    def __init__(self, table: dict[tuple[str, str], dict[str, float] | None] | None = None) -> None:
        self.table, self.judged = table or {}, []

    def label_probabilities(self, conversations, labels, prefixes=None):
        out = []
        for c in conversations:
            first, second = _SHOWN.search(c[-1]["content"]).groups()
            self.judged.append((first, second))
            out.append(self.table.get((first, second), {"A": 0.6, "B": 0.3, "C": 0.1}))
        return out

    def generate(self, conversations, max_new_tokens, prefixes=None):
        raise AssertionError("a prefilled judge without rationale writes nothing")


def prefer(better: str, worse: str, p: float) -> dict[tuple[str, str], dict[str, float]]:
    """Table entries for a judge that prefers `better` with probability p in both orders (no tie mass)."""
    return {(better, worse): {"A": p, "B": 1 - p, "C": 0.0}, (worse, better): {"A": 1 - p, "B": p, "C": 0.0}}


def rows_of(*prompts: str) -> list[PromptRow]:
    return [PromptRow(p, {}, "prompts.jsonl", i + 1) for i, p in enumerate(prompts)]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(tmp_path: Path, table, judge_table, *, prompts=("q1",), k=3, rules=None, name="out", **kw):
    policy, backend = ScriptedPolicy(table), TableBackend(judge_table)
    report = run_rlaif(rows_of(*prompts), policy, PairwiseJudge(backend), tmp_path / name, sampling=Sampling(k=k),
                       rules=rules or PairFilter(), **kw)
    return report, jsonl(tmp_path / name / "pairs.jsonl"), policy, backend


# ---- pure pieces ---------------------------------------------------------------------------------------------

def test_preference_averages_both_orders_counting_tie_mass_half():
    # order 1 (a first): p(a)=0.7, p(tie)=0.1 → 0.75; order 2 (b first): p(a)=0.5, p(tie)=0.1 → 0.55; mean 0.65
    verdict = PairVerdict("A", ("A", "A"), True, ({"A": 0.7, "B": 0.2, "tie": 0.1}, {"A": 0.5, "B": 0.4, "tie": 0.1}),
                          ("", ""), ("", ""))
    assert rlaif.preference(verdict) == pytest.approx(0.65)
    unread = PairVerdict("A", ("A",), None, (None,), ("",), ("",))
    assert rlaif.preference(unread) is None


def test_identical_candidates_are_not_paired():
    assert rlaif.candidate_pairs(["x", "y", "x", "z"]) == ([(0, 1), (0, 3), (1, 2), (1, 3), (2, 3)], 1)


# ---- k -------------------------------------------------------------------------------------------------------

LADDER = {"q1": ["bad", "ok", "good", "best"]}
# The judge ranks best > good > ok > bad, each comparison at probability 0.9 (no tie mass).
RANKED = {**prefer("best", "good", 0.9), **prefer("best", "ok", 0.9), **prefer("best", "bad", 0.9),
          **prefer("good", "ok", 0.9), **prefer("good", "bad", 0.9), **prefer("ok", "bad", 0.9)}


def test_k_sets_the_candidates_and_so_the_pairs(tmp_path):
    report, pairs, policy, backend = run(tmp_path, LADDER, RANKED, k=3, name="k3")
    # k=3: candidates bad, ok, good → pairs (0,1) (0,2) (1,2), each judged in both orders
    assert [(r["chosen"], r["rejected"]) for r in pairs] == [("ok", "bad"), ("good", "bad"), ("good", "ok")]
    assert [r["pair"] for r in pairs] == [[1, 0], [2, 0], [2, 1]]
    assert len(backend.judged) == 6 and report["pairs_judged"] == 3 and report["candidates"] == 3
    report, pairs, _, backend = run(tmp_path, LADDER, RANKED, k=2, name="k2")
    assert [(r["chosen"], r["rejected"]) for r in pairs] == [("ok", "bad")] and len(backend.judged) == 2


def test_rows_carry_probability_agreement_and_the_prompt(tmp_path):
    _, pairs, policy, _ = run(tmp_path, LADDER, RANKED, k=2)
    assert pairs == [{"prompt": "q1", "chosen": "ok", "rejected": "bad", "probability": pytest.approx(0.9),
                      "agreement": True, "prompt_index": 0, "pair": [1, 0]}]
    assert policy.calls == [(["q1"], 0)]  # seed 0 * stride + index 0


# ---- --min-confidence ----------------------------------------------------------------------------------------

# q1: x beats y at 0.9, x beats z at 0.6, z beats y at 0.8 (all position-consistent)
THREE = {"q1": ["x", "y", "z"]}
CONFIDENCES = {**prefer("x", "y", 0.9), **prefer("x", "z", 0.6), **prefer("z", "y", 0.8)}


def test_min_confidence_drops_pairs_below_it(tmp_path):
    report, pairs, _, _ = run(tmp_path, THREE, CONFIDENCES, rules=PairFilter(min_confidence=0.7), name="strict")
    assert [(r["chosen"], r["rejected"]) for r in pairs] == [("x", "y"), ("z", "y")]
    assert report["below_confidence"] == 1 and report["kept"] == 2
    assert report["mean_probability"] == pytest.approx((0.9 + 0.8) / 2)
    _, pairs, _, _ = run(tmp_path, THREE, CONFIDENCES, name="all")
    assert [(r["chosen"], r["rejected"]) for r in pairs] == [("x", "y"), ("x", "z"), ("z", "y")]


# ---- --max-pairs-per-prompt ----------------------------------------------------------------------------------

def test_cap_keeps_the_most_confident_pairs_per_prompt(tmp_path):
    table = {"q1": ["x", "y", "z"], "q2": ["x", "y", "z"]}
    report, pairs, _, _ = run(tmp_path, table, CONFIDENCES, prompts=("q1", "q2"),
                              rules=PairFilter(max_pairs_per_prompt=2))
    # per prompt: 0.9 (x>y) and 0.8 (z>y) stay, 0.6 (x>z) goes; rows keep the pair order
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in pairs] == [
        ("q1", "x", "y"), ("q1", "z", "y"), ("q2", "x", "y"), ("q2", "z", "y")]
    assert report["over_cap"] == 2 and report["kept"] == 4
    report, pairs, _, _ = run(tmp_path, table, CONFIDENCES, prompts=("q1", "q2"),
                              rules=PairFilter(max_pairs_per_prompt=1), name="one")
    assert [(r["prompt"], r["chosen"]) for r in pairs] == [("q1", "x"), ("q2", "x")] and report["over_cap"] == 4


# ---- --ties --------------------------------------------------------------------------------------------------

TIES = {"q1": ["a", "b", "c", "d"]}
TIE_TABLE = {
    # (a, b): position bias, but leaning to a: a first → p(a) = 0.6 + 0.1/2 = 0.65; b first → p(a) = 0.4 + 0.1/2
    # = 0.45; mean P(a ≻ b) = 0.55. The orders disagree (A, then A = b): a position-inconsistent tie.
    ("a", "b"): {"A": 0.6, "B": 0.3, "C": 0.1}, ("b", "a"): {"A": 0.5, "B": 0.4, "C": 0.1},
    # (c, d): the judge says tie in both orders, leaning to d: c first → p(c) = 0.2 + 0.5/2 = 0.45; d first →
    # p(c) = 0.2 + 0.5/2 = 0.45 (B is c when d is shown first); mean P(c ≻ d) = 0.45, so d is chosen at 0.55.
    ("c", "d"): {"A": 0.2, "B": 0.3, "C": 0.5}, ("d", "c"): {"A": 0.3, "B": 0.2, "C": 0.5},
    # every other pair: exactly balanced position bias → P = 0.5 → a tie that no probability can break
    **{(x, y): {"A": 0.6, "B": 0.3, "C": 0.1} for x in "abcd" for y in "abcd"
       if {x, y} not in ({"a", "b"}, {"c", "d"})},
}


def test_ties_are_dropped_and_counted_by_kind(tmp_path):
    report, pairs, _, _ = run(tmp_path, TIES, TIE_TABLE, k=4)
    assert pairs == []
    # 6 pairs: (c, d) is a consistent tie; the other 5 are position-inconsistent
    assert (report["ties"], report["ties_inconsistent"], report["ties_judged"]) == (6, 5, 1)
    assert report["position_consistency"] == pytest.approx(1 / 6)
    assert report["prompts_with_pairs"] == 0


def test_ties_probability_lets_the_averaged_probability_decide(tmp_path):
    report, pairs, _, _ = run(tmp_path, TIES, TIE_TABLE, k=4, rules=PairFilter(ties="probability"))
    assert [(r["chosen"], r["rejected"], r["agreement"]) for r in pairs] == [("a", "b", False), ("d", "c", True)]
    assert [r["probability"] for r in pairs] == [pytest.approx(0.55), pytest.approx(0.55)]
    assert (report["ties_broken"], report["ties"]) == (2, 4)
    strict = PairFilter(ties="probability", min_confidence=0.6)  # 0.55 is below it: broken, then dropped
    report, pairs, _, _ = run(tmp_path, TIES, TIE_TABLE, k=4, rules=strict, name="strict")
    assert pairs == [] and report["below_confidence"] == 2


def test_unread_verdicts_are_counted_and_never_guessed(tmp_path):
    table = {**prefer("x", "y", 0.9), ("x", "z"): None, ("z", "x"): {"A": 0.9, "B": 0.1, "C": 0.0},
             **prefer("z", "y", 0.8)}
    report, pairs, _, _ = run(tmp_path, THREE, table)
    assert [(r["chosen"], r["rejected"]) for r in pairs] == [("x", "y"), ("z", "y")]
    assert (report["unparsed_pairs"], report["unparsed_verdicts"]) == (1, 1)


def test_probability_filters_need_a_judge_with_probabilities(tmp_path):
    rule = RuleJudge(lambda prompts, completions, **_: [float(len(c)) for c in completions])
    lengths = {"q1": ["a", "bb", "ccc"]}
    for rules in (PairFilter(min_confidence=0.6), PairFilter(ties="probability")):
        with pytest.raises(ConfigError, match="no preference probabilities"):
            run_rlaif(rows_of("q1"), ScriptedPolicy(lengths), rule, tmp_path / "o", rules=rules)
    report = run_rlaif(rows_of("q1"), ScriptedPolicy(lengths), rule, tmp_path / "o", sampling=Sampling(k=3))
    pairs = jsonl(tmp_path / "o" / "pairs.jsonl")
    assert [(r["chosen"], r["rejected"], r["probability"]) for r in pairs] == [
        ("bb", "a", None), ("ccc", "a", None), ("ccc", "bb", None)]
    assert report["position_consistency"] is None  # one order: no agreement to measure


@pytest.mark.parametrize("bad", [dict(k=1), dict(temperature=0.0), dict(top_p=0.0)])
def test_sampling_settings_that_cannot_work_are_refused(bad):
    with pytest.raises(ConfigError):
        Sampling(**bad)


@pytest.mark.parametrize("bad", [dict(min_confidence=1.5), dict(max_pairs_per_prompt=-1), dict(ties="keep")])
def test_filters_that_cannot_work_are_refused(bad):
    with pytest.raises(ConfigError):
        PairFilter(**bad)


# ---- resume --------------------------------------------------------------------------------------------------

PROMPTS = ("q1", "q2", "q3", "q4")
MANY = {q: [f"{q}-bad", f"{q}-ok", f"{q}-good"] for q in PROMPTS}
MANY_JUDGE = {k: v for q in PROMPTS for k, v in {**prefer(f"{q}-good", f"{q}-ok", 0.7),
                                                 **prefer(f"{q}-good", f"{q}-bad", 0.95),
                                                 **prefer(f"{q}-ok", f"{q}-bad", 0.8)}.items()}


def uninterrupted(tmp_path: Path) -> Path:
    run(tmp_path, MANY, MANY_JUDGE, prompts=PROMPTS, name="whole")
    return tmp_path / "whole"


def test_resume_after_kill_matches_uninterrupted_and_skips_finished_prompts(tmp_path):
    whole = uninterrupted(tmp_path)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):  # killed while sampling prompt 3
        run_rlaif(rows_of(*PROMPTS), ScriptedPolicy(MANY, fail_on_call=3), PairwiseJudge(TableBackend(MANY_JUDGE)),
                  out, sampling=Sampling(k=3))
    assert len(jsonl(out / "judgements.jsonl")) == 2
    policy, backend = ScriptedPolicy(MANY), TableBackend(MANY_JUDGE)
    report = run_rlaif(rows_of(*PROMPTS), policy, PairwiseJudge(backend), out, sampling=Sampling(k=3))
    assert [p for p, _ in policy.calls] == [["q3"], ["q4"]]  # finished prompts are not sampled again...
    assert {first.split("-")[0] for first, _ in backend.judged} == {"q3", "q4"}  # ...nor judged again
    assert len(backend.judged) == 2 * 3 * 2  # 2 prompts × 3 pairs × 2 orders
    assert [seed for _, seed in policy.calls] == [2, 3]  # each prompt's own seed, as in the whole run
    assert report["resumed_prompts"] == 2 and report["kept"] == 12
    for name in ("pairs.jsonl", "judgements.jsonl"):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def test_kill_between_pair_rows_and_journal_line_leaves_no_duplicates(tmp_path, monkeypatch):
    whole = uninterrupted(tmp_path)
    out = tmp_path / "killed"
    write = Journal.write

    def dies_on_third(self, row):
        if row["prompt_index"] == 2:
            raise KeyboardInterrupt("killed after prompt 2's pair rows, before its judgement line")
        write(self, row)

    monkeypatch.setattr(Journal, "write", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_rlaif(rows_of(*PROMPTS), ScriptedPolicy(MANY), PairwiseJudge(TableBackend(MANY_JUDGE)), out,
                  sampling=Sampling(k=3))
    assert len(jsonl(out / "pairs.jsonl")) == 9  # prompts 0, 1 and 2's rows; prompt 2 not journaled
    monkeypatch.setattr(Journal, "write", write)
    policy = ScriptedPolicy(MANY)
    run_rlaif(rows_of(*PROMPTS), policy, PairwiseJudge(TableBackend(MANY_JUDGE)), out, sampling=Sampling(k=3))
    assert [p for p, _ in policy.calls] == [["q3"], ["q4"]]
    assert (out / "pairs.jsonl").read_bytes() == (whole / "pairs.jsonl").read_bytes()


def test_a_torn_last_line_is_redone(tmp_path):
    whole = uninterrupted(tmp_path)
    out = tmp_path / "torn"
    out.mkdir()
    lines = (whole / "judgements.jsonl").read_text().splitlines(keepends=True)
    (out / "judgements.jsonl").write_text("".join(lines[:2]) + lines[2][:40])  # prompt 2's line cut by a kill
    (out / "settings.json").write_bytes((whole / "settings.json").read_bytes())
    (out / "pairs.jsonl").write_text("".join((whole / "pairs.jsonl").read_text().splitlines(keepends=True)[:7])
                                     + '{"prompt": "q3", "cho')
    policy = ScriptedPolicy(MANY)
    report = run_rlaif(rows_of(*PROMPTS), policy, PairwiseJudge(TableBackend(MANY_JUDGE)), out,
                       sampling=Sampling(k=3))
    assert [p for p, _ in policy.calls] == [["q3"], ["q4"]] and report["torn_lines"] == 1
    for name in ("pairs.jsonl", "judgements.jsonl"):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_new_filter_refilters_the_cached_judgements_without_judging(tmp_path):
    whole = uninterrupted(tmp_path)
    policy, backend = ScriptedPolicy(MANY), TableBackend(MANY_JUDGE)
    report = run_rlaif(rows_of(*PROMPTS), policy, PairwiseJudge(backend), whole, sampling=Sampling(k=3),
                       rules=PairFilter(min_confidence=0.75))
    assert policy.calls == [] and backend.judged == []
    # per prompt, in pair order: ok>bad 0.8 stays, good>bad 0.95 stays, good>ok 0.7 goes
    assert [r["probability"] for r in jsonl(whole / "pairs.jsonl")] == [pytest.approx(p) for p in [0.8, 0.95] * 4]
    assert report["below_confidence"] == 4


def test_resuming_with_other_sampling_settings_or_prompts_is_refused(tmp_path):
    whole = uninterrupted(tmp_path)
    judge = PairwiseJudge(TableBackend(MANY_JUDGE))
    with pytest.raises(ConfigError, match="k: 3 then, 2 now"):
        run_rlaif(rows_of(*PROMPTS), ScriptedPolicy(MANY), judge, whole, sampling=Sampling(k=2))
    with pytest.raises(ConfigError, match="other prompts"):
        run_rlaif(rows_of("q2", "q1"), ScriptedPolicy(MANY), judge, whole, sampling=Sampling(k=3))
    policy = ScriptedPolicy(MANY)
    run_rlaif(rows_of("q2", "q1"), policy, judge, whole, sampling=Sampling(k=3), overwrite=True)
    assert len(policy.calls) == 2


# ---- the rows are preference data ----------------------------------------------------------------------------

def test_rows_normalize_as_preference_pairs_with_their_extra_fields(tmp_path):
    rules = PairFilter(ties="probability")
    run(tmp_path, TIES, TIE_TABLE, k=4, rules=rules)
    records, bad = normalize(load_rows(tmp_path / "out" / "pairs.jsonl"), "preference")
    assert bad.total() == 0
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in records] == [("q1", "a", "b"), ("q1", "d", "c")]
