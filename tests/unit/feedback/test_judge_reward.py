"""Direct RLAIF: `--reward judge:MODE[=COLUMN][:JUDGE]`, an LLM judge as a reward source of the online methods.
Judges are scripted (replies keyed by the answer shown) or a tiny random model whose label probabilities are read
here by hand."""

from __future__ import annotations

import re

import pytest

from bridle.errors import ConfigError
from bridle.feedback.judge_backends import LocalLMBackend
from bridle.feedback.judges import PairwiseJudge, RubricJudge
from bridle.feedback.sources import JudgeRewardSpec, JudgeSource, Sample, build_reward, parse_judge_reward
from bridle.models import tiny_causal_lm, tiny_tokenizer

_ANSWER = re.compile(r"### Answer\n(.*?)\n### End of answer", re.DOTALL)
_PAIR = re.compile(r"### Answer A\n(.*?)\n### End of answer A.*### Answer B\n(.*?)\n### End of answer B", re.DOTALL)


class GradeBackend:
    """An endpoint-like judge (no prefill) whose reply is `replies[answer]`; records every conversation."""

    can_prefill = False

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies, self.seen = replies, []

    def generate(self, conversations, max_new_tokens, prefixes=None):
        self.seen += [c[-1]["content"] for c in conversations]
        return [self.replies[_ANSWER.search(c[-1]["content"]).group(1)] for c in conversations]


class PairBackend:
    """A judge of pairs: label probabilities (prefilled, local-like) or text replies (endpoint-like), keyed by
    (answer shown first, answer shown second)."""

    def __init__(self, table: dict[tuple[str, str], object], *, can_prefill: bool) -> None:
        self.table, self.can_prefill, self.seen = table, can_prefill, []

    def _keys(self, conversations):
        keys = [_PAIR.search(c[-1]["content"]).groups() for c in conversations]
        self.seen += keys
        return keys

    def label_probabilities(self, conversations, labels, prefixes=None):
        return [self.table[k] for k in self._keys(conversations)]

    def generate(self, conversations, max_new_tokens, prefixes=None):
        return [self.table[k] for k in self._keys(conversations)]


def samples(*completions: str, prompt: str = "Name a fruit.", **columns) -> list[Sample]:
    return [Sample([{"role": "user", "content": prompt}], c, True, dict(columns)) for c in completions]


# ---- the spec ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, want", [
    ("judge:grade", JudgeRewardSpec("grade", None, "local")),
    ("judge:grade=answer", JudgeRewardSpec("grade", "answer", "local")),
    ("judge:grade:local:runs/judge/model", JudgeRewardSpec("grade", None, "local:runs/judge/model")),
    ("judge:reference", JudgeRewardSpec("reference", "output", "local")),
    ("judge:reference=gold:endpoint:gpt-4o-mini", JudgeRewardSpec("reference", "gold", "endpoint:gpt-4o-mini")),
    ("judge:grade:endpoint", JudgeRewardSpec("grade", None, "endpoint")),
])
def test_judge_reward_specs_parse(entry, want):
    assert parse_judge_reward(entry) == want


@pytest.mark.parametrize("entry, says", [
    ("judge:score", "unknown judge reward"), ("judge:grade=", "unknown judge reward"),
    ("judge:grade:rm:runs/rm", "is not an LLM judge"), ("judge:reference:rule:math_exact_match", "not an LLM judge"),
])
def test_bad_judge_reward_specs_say_what_an_entry_is(entry, says):
    with pytest.raises(ConfigError, match=says) as err:
        parse_judge_reward(entry)
    assert "judge:MODE[=COLUMN][:JUDGE]" in str(err.value)
    with pytest.raises(ConfigError):
        build_reward(f"math_exact_match,{entry}")


def test_build_reward_wires_a_weighted_judge_entry_without_loading_a_model():
    reward = build_reward("0.5*judge:grade, math_exact_match")
    (weight, source), _ = reward.sources
    assert weight == 0.5 and isinstance(source, JudgeSource) and source._judge is None
    assert reward.names == ["judge_grade", "math_exact_match"]


# ---- grade ---------------------------------------------------------------------------------------------------

def test_grade_is_the_rubric_judges_score_and_the_weight_applies():
    backend = GradeBackend({"Apple.": "Right.\nRating: [[8]]", "Rock.": "Rating: [[2]]", "Hmm.": "no grade"})
    reward = build_reward("0.5*judge:grade")
    reward.sources[0][1]._judge = RubricJudge(backend)
    result = reward(samples("Apple.", "Rock.", "Hmm."))
    # 8, 2, and 5.5 (unreadable: the middle of the 1-10 scale); total = 0.5 × each
    assert result.parts == {"judge_grade": [8.0, 2.0, 5.5]} and result.total == [4.0, 1.0, 2.75]
    source = reward.sources[0][1]
    assert (source.judged, source.unparsed) == (3, 1)
    assert "Reference answer" not in backend.seen[0]


def test_grade_with_a_column_shows_the_reference_and_a_missing_column_is_named():
    backend = GradeBackend({"Apple.": "Rating: [[9]]"})
    source = JudgeSource("judge:grade=answer", judge=RubricJudge(backend))
    assert source(samples("Apple.", answer="An apple.")) == [9.0]
    assert "### Reference answer\nAn apple.\n" in backend.seen[0]
    with pytest.raises(ConfigError, match="no text column 'answer'.*its columns: gold.*judge:grade=gold"):
        source(samples("Pear.", gold="A pear."))


def test_repeated_samples_are_judged_once():
    backend = GradeBackend({"Apple.": "Rating: [[8]]", "Rock.": "Rating: [[2]]"})
    source = JudgeSource("judge:grade", judge=RubricJudge(backend))
    assert source(samples("Apple.", "Rock.", "Apple.")) == [8.0, 2.0, 8.0]
    assert source(samples("Rock.", "Apple.")) == [2.0, 8.0]
    assert len(backend.seen) == 2  # two distinct (prompt, completion) pairs over both calls
    assert source(samples("Rock.", prompt="Name a mineral.")) == [2.0] and len(backend.seen) == 3  # a new prompt


# ---- reference -----------------------------------------------------------------------------------------------

def test_reference_is_the_order_averaged_probability_of_beating_the_reference():
    table = {
        # good vs ref: good first p(good) = 0.7 + 0.1/2 = 0.75; ref first p(good) = 0.6 + 0.1/2 = 0.65 → 0.70
        ("good", "ref"): {"A": 0.7, "B": 0.2, "C": 0.1}, ("ref", "good"): {"A": 0.3, "B": 0.6, "C": 0.1},
        # bad vs ref: bad first 0.1 + 0.2/2 = 0.2; ref first 0.3 + 0.2/2 = 0.4 → 0.30
        ("bad", "ref"): {"A": 0.1, "B": 0.7, "C": 0.2}, ("ref", "bad"): {"A": 0.5, "B": 0.3, "C": 0.2},
    }
    source = JudgeSource("judge:reference=gold", judge=PairwiseJudge(PairBackend(table, can_prefill=True)))
    assert source(samples("good", "bad", gold="ref")) == [pytest.approx(0.70), pytest.approx(0.30)]


def test_reference_from_a_text_judge_is_win_tie_loss_and_unreadable_is_neutral():
    table = {("win", "ref"): "[[A]]", ("ref", "win"): "[[B]]",      # both orders: the sample → 1
             ("lose", "ref"): "[[B]]", ("ref", "lose"): "[[A]]",    # both orders: the reference → 0
             ("bias", "ref"): "[[A]]", ("ref", "bias"): "[[A]]",    # first shown each time: a tie → ½
             ("mute", "ref"): "[[A]]", ("ref", "mute"): "I cannot say."}  # unreadable → ½, counted
    source = JudgeSource("judge:reference", judge=PairwiseJudge(PairBackend(table, can_prefill=False)))
    assert source(samples("win", "lose", "bias", "mute", output="ref")) == [1.0, 0.0, 0.5, 0.5]
    assert source.unparsed == 1


def test_reference_on_a_local_model_matches_its_label_probabilities_read_by_hand():
    backend = LocalLMBackend(tiny_causal_lm(seed=3).eval(), tiny_tokenizer())
    judge = PairwiseJudge(backend)
    source = JudgeSource("judge:reference=gold", judge=judge)
    got = source(samples("A banana.", gold="An apple."))[0]
    template = judge._template(None)
    conversation = lambda a, b: [{"role": "user", "content": template.format(  # noqa: E731
        rubric=judge.rubric, question="Name a fruit.", answer_a=a, answer_b=b)}]
    first, second = backend.label_probabilities([conversation("A banana.", "An apple."),
                                                 conversation("An apple.", "A banana.")], ["A", "B", "C"],
                                                ["Verdict: [["] * 2)
    # the sample is "A" when shown first and "B" when shown second; a tie counts half
    want = ((first["A"] + first["C"] / 2) + (second["B"] + second["C"] / 2)) / 2
    assert got == pytest.approx(want) and 0 < got < 1
