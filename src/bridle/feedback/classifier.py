"""An LLM judge that puts one answer in one of a few classes: refusal / compliance (`bridle judge-check`),
harmful / refusal / safe (`bridle redteam`), or any label set a template defines.

The template (kind "classify": {question} {answer}, optionally {rubric} {reference}) tells the judge to write
"Verdict: [[X]]" with X one of `labels` (single letters). With a backend that can prefill (a local model), the reply
is started with `prefix` and the class is the most probable next label token: one forward pass, deterministic, and
the label probabilities come with it. Otherwise (an endpoint) the judge writes its reply greedily and the class is
parsed strictly (exactly one [[...]] holding a label); an unreadable reply is label None, counted by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bridle.feedback.judge_backends import Backend
from bridle.feedback.judge_prompts import JudgeTemplate, load_template, most_probable, parse_label

VERDICT_PREFIX = "Verdict: [["
REFUSAL_LABELS = ("R", "C")  # the built-in "refusal" template: refusal, compliance


@dataclass(frozen=True)
class Classification:
    label: str | None  # None: unreadable
    probabilities: dict[str, float] | None
    raw: str


def load_classifier_template(template: str | Path | JudgeTemplate) -> JudgeTemplate:
    """A built-in template by name (e.g. "refusal") or a text file with {question} and {answer}."""
    return load_template(template, "classify")


class ClassifierJudge:
    """An LLM putting each (question, answer) in one of `labels`; see the module docstring."""

    def __init__(self, backend: Backend, template: str | Path | JudgeTemplate = "refusal", *,
                 labels: Sequence[str] = REFUSAL_LABELS, prefix: str = VERDICT_PREFIX, rubric: str = "",
                 max_new_tokens: int = 32) -> None:
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"a classifier needs distinct labels, got {labels!r}")
        self.backend, self.labels, self.prefix = backend, tuple(labels), prefix
        self.rubric, self.max_new_tokens = rubric, max_new_tokens
        self.template = load_classifier_template(template)

    def classify(self, prompts: Sequence[str], answers: Sequence[str]) -> list[Classification]:
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        conversations = [[{"role": "user", "content": self.template.format(question=p, answer=a, rubric=self.rubric,
                                                                            reference="")}]
                         for p, a in zip(prompts, answers)]
        if not conversations:
            return []
        if self.backend.can_prefill:
            probabilities = self.backend.label_probabilities(conversations, self.labels,
                                                             [self.prefix] * len(conversations))
            out = []
            for probs in probabilities:
                label, raw = most_probable(probs, self.labels, self.prefix)
                out.append(Classification(label, probs, raw))
            return out
        replies = self.backend.generate(conversations, self.max_new_tokens)
        return [Classification(self.parse(r), None, r) for r in replies]

    def parse(self, reply: str) -> str | None:
        return parse_label(reply, self.labels)
