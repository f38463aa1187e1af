"""One `Judge` interface for every source of feedback: LLM judges (pairwise, 1–10 grades), reward models, rules.

    judge.compare(prompts, answers_a, answers_b, references=None) -> list[PairVerdict]   # which answer is better
    judge.grade(prompts, answers, references=None) -> list[Grade]                         # how good is one answer

A judge that cannot do one of the two raises ConfigError saying which judge can.

- `PairwiseJudge`: an LLM shown each pair twice, A first and then B first (labels mapped back), to cancel position
  bias. Both orders agree → that winner; they disagree → "tie", marked position-inconsistent. An unreadable verdict
  in either order leaves the pair unparsed (winner None): counted by `summarize_pairs`, never guessed.
- `RubricJudge`: an LLM grades one answer 1–10 against a rubric (MT-bench's single-answer grading), optionally
  against a reference answer.
- `RewardModelJudge`: a `bridle rm` model; higher reward wins, a grade is the reward.
- `RuleJudge`: a verifier / reward function in TRL's convention (`bridle.feedback.verifiers`); higher value wins.

Verdict parsing is strict: a reply is read only when it holds exactly one "[[...]]" and that holds a label ("A",
"B", "C" = tie) or, for grades, a whole number from 1 to 10. LLM judge prompts are template files
(`judge_templates/*.txt`, or the user's own) with {question} {answer_a} {answer_b} {answer} {reference} {rubric}.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridle.data.chat import Prompt
from bridle.errors import ConfigError
from bridle.feedback.judge_backends import Backend, Conversation
from bridle.feedback.judge_prompts import (
    PAIR_LABELS,
    JudgeTemplate,
    load_template,
    most_probable,
    parse_pair_verdict,
    parse_rating,
)
from bridle.feedback.reward_model import RewardModel
from bridle.feedback.verifiers import BUILTINS

DEFAULT_RUBRIC = ("correctness first; then whether it answers what was asked, and whether it is clear and as "
                  "detailed as the question needs, no more.")
VERDICT_PREFIX = "Verdict: [["  # the reply prefix after which a local judge's label probabilities are read
RATING_PREFIX = "Rating: [["
RATING_TOKENS = 6  # enough for "10]]" in any tokenizer
# What a written label means for the caller, in each presentation order: answer a shown first, then b first.
_MEANING = ({"A": "A", "B": "B", "C": "tie"}, {"A": "B", "B": "A", "C": "tie"})
_VERDICT_START = re.compile(r"verdict\s*:|\[\[", re.IGNORECASE)
_RATING_START = re.compile(r"rating\s*:|\[\[", re.IGNORECASE)
READS = ("probabilities", "text")

# ---- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairVerdict:
    """A judgement of one pair, in the caller's terms ("A" = answers_a, "B" = answers_b).

    `winner`: "A", "B", "tie", or None when it could not be read (unparsed, or a rule with no opinion).
    Per presentation order (two for LLM judges: a shown first, then b shown first; one for reward models and
    rules, which see no order): `verdicts` ("A" / "B" / "tie" / None), `probabilities` ({"A", "B", "tie"} → p when
    read from label probabilities, else None), `raw` (the judge's reply as read), `rationales`.
    `position_consistent`: whether the two orders agreed; None when unparsed or judged in one order only.
    """

    winner: str | None
    verdicts: tuple[str | None, ...]
    position_consistent: bool | None
    probabilities: tuple[dict[str, float] | None, ...]
    raw: tuple[str, ...]
    rationales: tuple[str, ...]

    @property
    def parsed(self) -> bool:
        return self.winner is not None

    @property
    def mean_probabilities(self) -> dict[str, float] | None:
        """The probabilities averaged over presentation orders (position bias cancelled), when every order has them."""
        known = [p for p in self.probabilities if p is not None]
        if not known or len(known) != len(self.probabilities):
            return None
        return {k: sum(p[k] for p in known) / len(known) for k in known[0]}


@dataclass(frozen=True)
class Grade:
    """One answer's grade: 1–10 from a `RubricJudge` (None when unparsed), the reward from a `RewardModelJudge`, the
    rule's value from a `RuleJudge` (None: no opinion). `raw` is the judge's reply as read."""

    score: float | None
    raw: str
    rationale: str = ""

    @property
    def parsed(self) -> bool:
        return self.score is not None


# ---- the interface -------------------------------------------------------------------------------------------


class Judge:
    """Every judge answers `compare` and/or `grade`; one it cannot answer raises ConfigError."""

    name = "judge"

    def compare(self, prompts: Sequence[Prompt], answers_a: Sequence[Prompt], answers_b: Sequence[Prompt],
                references: Sequence[str] | None = None) -> list[PairVerdict]:
        raise ConfigError(f"the {self.name} judge grades single answers and cannot compare pairs; compare with a "
                          "PairwiseJudge, RewardModelJudge or RuleJudge.")

    def grade(self, prompts: Sequence[Prompt], answers: Sequence[Prompt], references: Sequence[str] | None = None
              ) -> list[Grade]:
        raise ConfigError(f"the {self.name} judge compares pairs and cannot grade single answers; grade with a "
                          "RubricJudge, RewardModelJudge or RuleJudge.")


def _before(reply: str, start: re.Pattern[str]) -> str:
    """The judge's reasoning: its reply up to where the verdict starts."""
    found = start.search(reply)
    return (reply[:found.start()] if found else reply).strip()


# ---- LLM judges ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reading:
    """One LLM reply, in the judge's own labels."""

    label: str | None
    probabilities: dict[str, float] | None
    raw: str
    rationale: str


class _TemplateJudge(Judge):
    kind = ""

    def __init__(self, backend: Backend, template: str | Path | JudgeTemplate | None, *, rubric: str,
                 rationale: bool, max_new_tokens: int) -> None:
        if max_new_tokens < 1:
            raise ConfigError(f"judge max_new_tokens must be >= 1, got {max_new_tokens}")
        self.backend, self.rubric, self.rationale, self.max_new_tokens = backend, rubric, rationale, max_new_tokens
        self.template = load_template(template, self.kind) if template is not None else None

    def _template(self, references: Sequence[str] | None) -> JudgeTemplate:
        if self.template is None:
            return load_template(f"{self.kind}_reference" if references is not None else self.kind, self.kind)
        uses = "reference" in self.template.fields
        if references is not None and not uses:
            raise ConfigError(f"reference answers were given, but the judge template {self.template.source} has no "
                              f"{{reference}}, so they would be ignored. Use a template with {{reference}} (built-in: "
                              f"{self.kind}_reference) or pass no references.")
        if references is None and uses:
            raise ConfigError(f"the judge template {self.template.source} shows {{reference}}, but no reference "
                              "answers were given; pass references= or use a template without {reference}.")
        return self.template

    def _conversation(self, template: JudgeTemplate, **values: Any) -> Conversation:
        text = {k: _as_text(v) for k, v in values.items() if v is not None}
        return [{"role": "user", "content": template.format(rubric=self.rubric, **text)}]


class PairwiseJudge(_TemplateJudge):
    """An LLM judge of pairs, each shown in both orders. `read`: "probabilities" (the default where the backend
    can prefill, i.e. a local model) reads the next-token probabilities of "A" / "B" / "C" after the reply prefix
    "Verdict: [[", one forward pass per order; with `rationale`, the judge first writes its reasoning (greedy, up to
    `max_new_tokens`) and the verdict is read after it. "text" (the default for endpoints) lets the judge write its
    whole reply and parses the verdict from it strictly. `verdict_prefix=""` with a template that asks for the bare
    label lets an endpoint's first-token logprobs be read."""

    name = "pairwise"
    kind = "pairwise"

    def __init__(self, backend: Backend, template: str | Path | JudgeTemplate | None = None, *,
                 rubric: str = DEFAULT_RUBRIC, read: str | None = None, rationale: bool = False,
                 max_new_tokens: int = 512, verdict_prefix: str = VERDICT_PREFIX) -> None:
        super().__init__(backend, template, rubric=rubric, rationale=rationale, max_new_tokens=max_new_tokens)
        self.read = read or ("probabilities" if backend.can_prefill else "text")
        if self.read not in READS:
            raise ConfigError(f"judge read={self.read!r}; use one of {', '.join(READS)}.")
        if self.read == "probabilities" and not backend.can_prefill and (verdict_prefix or rationale):
            raise ConfigError("this judge backend cannot start the reply with a prefix, so label probabilities "
                              "can only be read from its first token: pass read='text', or verdict_prefix='' "
                              "and rationale=False with a template that asks for the bare label.")
        self.verdict_prefix = verdict_prefix

    def compare(self, prompts: Sequence[Prompt], answers_a: Sequence[Prompt], answers_b: Sequence[Prompt],
                references: Sequence[str] | None = None) -> list[PairVerdict]:
        n = _same_length(prompts=prompts, answers_a=answers_a, answers_b=answers_b, references=references)
        template = self._template(references)
        refs = references if references is not None else [None] * n
        rows = list(zip(prompts, answers_a, answers_b, refs))
        conversations = [self._conversation(template, question=p, answer_a=a, answer_b=b, reference=r)
                         for p, a, b, r in rows]  # a shown first
        conversations += [self._conversation(template, question=p, answer_a=b, answer_b=a, reference=r)
                          for p, a, b, r in rows]  # b shown first
        readings = self._read(conversations)
        return [_combine_orders(readings[i], readings[n + i]) for i in range(n)]

    def _read(self, conversations: list[Conversation]) -> list[_Reading]:
        if self.read == "text":
            replies = self.backend.generate(conversations, self.max_new_tokens)
            return [_Reading(parse_pair_verdict(r), None, r, _before(r, _VERDICT_START)) for r in replies]
        rationales = [""] * len(conversations)
        if self.rationale:
            replies = self.backend.generate(conversations, self.max_new_tokens)
            rationales = [_before(r, _VERDICT_START) for r in replies]
        prefixes = [f"{r}\n\n{self.verdict_prefix}" if r else self.verdict_prefix for r in rationales]
        probabilities = self.backend.label_probabilities(conversations, PAIR_LABELS, prefixes)
        readings = []
        for probs, prefix, rationale in zip(probabilities, prefixes, rationales):
            label, raw = most_probable(probs, PAIR_LABELS, prefix)
            readings.append(_Reading(label, probs, raw, rationale))
        return readings


def _combine_orders(first: _Reading, second: _Reading) -> PairVerdict:
    """The pair's verdict from its two readings (a shown first, b shown first), mapped back to the caller's labels:
    agree → that winner; disagree → tie, position-inconsistent; either unreadable → unparsed."""
    readings = (first, second)
    verdicts = tuple(_MEANING[order].get(r.label) if r.label else None for order, r in enumerate(readings))
    probabilities = tuple({_MEANING[order][k]: p for k, p in r.probabilities.items()} if r.probabilities else None
                          for order, r in enumerate(readings))
    if None in verdicts:
        winner, consistent = None, None
    elif verdicts[0] == verdicts[1]:
        winner, consistent = verdicts[0], True
    else:
        winner, consistent = "tie", False
    return PairVerdict(winner, verdicts, consistent, probabilities, tuple(r.raw for r in readings),
                       tuple(r.rationale for r in readings))


class RubricJudge(_TemplateJudge):
    """An LLM grading single answers 1–10 against `rubric` (MT-bench style), with a reference answer when
    references are given. A local model's reply is prefilled with "Rating: [[" and continued greedily for a few
    tokens (after its reasoning, with `rationale`); an endpoint writes its whole reply. Either way the grade is
    parsed strictly from the reply."""

    name = "rubric"
    kind = "grade"

    def __init__(self, backend: Backend, template: str | Path | JudgeTemplate | None = None, *,
                 rubric: str = DEFAULT_RUBRIC, rationale: bool = False, max_new_tokens: int = 512) -> None:
        super().__init__(backend, template, rubric=rubric, rationale=rationale, max_new_tokens=max_new_tokens)

    def grade(self, prompts: Sequence[Prompt], answers: Sequence[Prompt], references: Sequence[str] | None = None
              ) -> list[Grade]:
        n = _same_length(prompts=prompts, answers=answers, references=references)
        template = self._template(references)
        refs = references if references is not None else [None] * n
        conversations = [self._conversation(template, question=p, answer=a, reference=r)
                         for p, a, r in zip(prompts, answers, refs)]
        if self.backend.can_prefill:
            rationales = [""] * n
            if self.rationale:
                replies = self.backend.generate(conversations, self.max_new_tokens)
                rationales = [_before(r, _RATING_START) for r in replies]
            prefixes = [f"{r}\n\n{RATING_PREFIX}" if r else RATING_PREFIX for r in rationales]
            tails = self.backend.generate(conversations, RATING_TOKENS, prefixes)
            replies = [prefix + tail for prefix, tail in zip(prefixes, tails)]
        else:
            replies = self.backend.generate(conversations, self.max_new_tokens)
        return [Grade(parse_rating(r), r, _before(r, _RATING_START)) for r in replies]


# ---- reward-model and rule judges ----------------------------------------------------------------------------


class RewardModelJudge(Judge):
    """A reward model as a judge: `grade` is the reward; `compare` prefers the higher reward, a tie when the two
    differ by at most `tie_margin`, with the Bradley–Terry probability σ(r_a − r_b) that A is preferred."""

    name = "reward_model"

    def __init__(self, reward_model: RewardModel | str | Path, *, tie_margin: float = 0.0, normalize: bool = False,
                 batch_size: int = 8) -> None:
        if not tie_margin >= 0:
            raise ConfigError(f"tie_margin must be >= 0, got {tie_margin}")
        self.reward_model = reward_model if isinstance(reward_model, RewardModel) else RewardModel.load(reward_model)
        self.tie_margin, self.normalize, self.batch_size = tie_margin, normalize, batch_size

    def _scores(self, prompts: Sequence[Prompt], answers: Sequence[Prompt], references: Sequence[str] | None
                ) -> list[float]:
        if references is not None:
            raise ConfigError("a reward-model judge reads no reference answers; pass references=None, or judge with "
                              "a RubricJudge / PairwiseJudge and a reference template.")
        return self.reward_model.score(prompts, answers, batch_size=self.batch_size, normalize=self.normalize)

    def grade(self, prompts: Sequence[Prompt], answers: Sequence[Prompt], references: Sequence[str] | None = None
              ) -> list[Grade]:
        _same_length(prompts=prompts, answers=answers)
        return [Grade(s, f"reward {s:.6g}") for s in self._scores(prompts, answers, references)]

    def compare(self, prompts: Sequence[Prompt], answers_a: Sequence[Prompt], answers_b: Sequence[Prompt],
                references: Sequence[str] | None = None) -> list[PairVerdict]:
        n = _same_length(prompts=prompts, answers_a=answers_a, answers_b=answers_b)
        scores = self._scores(list(prompts) * 2, list(answers_a) + list(answers_b), references)
        verdicts = []
        for a, b in zip(scores[:n], scores[n:]):
            p_a = 1.0 / (1.0 + math.exp(min(b - a, 700.0)))
            verdicts.append(_scored_verdict(a, b, self.tie_margin, {"A": p_a, "B": 1.0 - p_a}, "reward"))
        return verdicts


class RuleJudge(Judge):
    """A verifier / reward function as a judge (TRL convention: fn(prompts=, completions=, **columns) → one float
    or None per completion), e.g. `RuleJudge("math_exact_match")` with the gold answers as references (passed as
    the `reference_column` keyword, "answer" for GSM8K). `grade` is the function's value; `compare` prefers the
    higher value, a tie within `tie_margin`. None ("no opinion") stays None: the pair is unparsed, not guessed."""

    def __init__(self, fn: Callable[..., Sequence[float | None]] | str, *, reference_column: str = "answer",
                 tie_margin: float = 0.0) -> None:
        if not tie_margin >= 0:
            raise ConfigError(f"tie_margin must be >= 0, got {tie_margin}")
        if isinstance(fn, str):
            if fn in BUILTINS:
                fn = BUILTINS[fn]
            else:
                from bridle.feedback.functions import load_function

                fn = load_function(fn)
        self.fn, self.reference_column, self.tie_margin = fn, reference_column, tie_margin
        self.name = getattr(fn, "__name__", "rule")

    def _scores(self, prompts: Sequence[Prompt], answers: Sequence[Prompt], references: Sequence[str] | None
                ) -> list[float | None]:
        kwargs: dict[str, Any] = {"prompts": list(prompts), "completions": list(answers)}
        if references is not None:
            kwargs[self.reference_column] = list(references)
        try:
            inspect.signature(self.fn).bind(**kwargs)
        except TypeError as e:
            raise ConfigError(f"rule {self.name} cannot be called with {sorted(kwargs)}: {e}. Rules that check against "
                              f"a gold answer need references= (passed as {self.reference_column}=).") from e
        except ValueError:  # no signature to check
            pass
        values = self.fn(**kwargs)
        values = values.tolist() if hasattr(values, "tolist") else list(values)
        if len(values) != len(answers):
            raise ConfigError(f"rule {self.name} returned {len(values)} values for {len(answers)} answers; return "
                              "one float (or None) per completion, in order.")
        for value in values:
            if value is not None and (not isinstance(value, numbers.Real) or not math.isfinite(value)):
                raise ConfigError(f"rule {self.name} returned {value!r}; values must be finite numbers or None.")
        return [None if v is None else float(v) for v in values]

    def grade(self, prompts: Sequence[Prompt], answers: Sequence[Prompt], references: Sequence[str] | None = None
              ) -> list[Grade]:
        _same_length(prompts=prompts, answers=answers, references=references)
        return [Grade(s, f"{self.name} {s}") for s in self._scores(prompts, answers, references)]

    def compare(self, prompts: Sequence[Prompt], answers_a: Sequence[Prompt], answers_b: Sequence[Prompt],
                references: Sequence[str] | None = None) -> list[PairVerdict]:
        n = _same_length(prompts=prompts, answers_a=answers_a, answers_b=answers_b, references=references)
        refs = list(references) * 2 if references is not None else None
        scores = self._scores(list(prompts) * 2, list(answers_a) + list(answers_b), refs)
        return [_scored_verdict(a, b, self.tie_margin, None, self.name) for a, b in zip(scores[:n], scores[n:])]


def _scored_verdict(a: float | None, b: float | None, tie_margin: float, probabilities: dict[str, float] | None,
                    what: str) -> PairVerdict:
    """A one-order verdict from two scores: the higher wins, a tie within `tie_margin`, unparsed when either is
    None."""
    if a is None or b is None:
        winner = None
    else:
        winner = "tie" if abs(a - b) <= tie_margin else ("A" if a > b else "B")
    return PairVerdict(winner, (winner,), None, (probabilities,), (f"{what} A {a}, {what} B {b}",), ("",))


# ---- summaries -----------------------------------------------------------------------------------------------


def summarize_pairs(verdicts: Sequence[PairVerdict]) -> dict[str, Any]:
    """Counts for a report: wins, ties, unparsed pairs and single-order verdicts, and the position-inconsistency
    rate: of the pairs judged in both orders with both verdicts read, the share whose two verdicts disagree (None
    when there are none)."""
    both_read = [v for v in verdicts if len(v.verdicts) == 2 and None not in v.verdicts]
    inconsistent = sum(v.position_consistent is False for v in both_read)
    return {
        "pairs": len(verdicts),
        "wins_a": sum(v.winner == "A" for v in verdicts),
        "wins_b": sum(v.winner == "B" for v in verdicts),
        "ties": sum(v.winner == "tie" for v in verdicts),
        "unparsed_pairs": sum(v.winner is None for v in verdicts),
        "unparsed_verdicts": sum(x is None for v in verdicts for x in v.verdicts),
        "verdicts": sum(len(v.verdicts) for v in verdicts),
        "position_inconsistent": inconsistent,
        "position_inconsistency_rate": inconsistent / len(both_read) if both_read else None,
    }


def summarize_grades(grades: Sequence[Grade]) -> dict[str, Any]:
    """Counts for a report: answers, unparsed grades, and the mean of the parsed ones (None when there are none)."""
    scores = [g.score for g in grades if g.score is not None]
    return {"answers": len(grades), "unparsed": len(grades) - len(scores),
            "mean_score": sum(scores) / len(scores) if scores else None}


# ---- helpers -------------------------------------------------------------------------------------------------


def _as_text(value: Prompt) -> str:
    """A prompt or answer as the judge reads it: text as is; one message as its content; a conversation as a
    transcript, one "Role: content" block per turn."""
    if isinstance(value, str):
        return value
    if len(value) == 1:
        return value[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in value)


def _same_length(**columns: Sequence[Any] | None) -> int:
    lengths = {name: len(col) for name, col in columns.items() if col is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError("judge inputs differ in length: " + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    return next(iter(lengths.values()))
