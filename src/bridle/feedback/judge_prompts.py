"""Judge prompts and reading judges' replies: template files with {placeholders}, checked for the kind of judge
that fills them, and strict parsing of a verdict ("exactly one [[...]] holding a known label"), never a guess."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bridle.errors import ConfigError

PAIR_LABELS = ("A", "B", "C")  # what an LLM judge writes: the answer shown first, the one shown second, a tie
_BRACKETED = re.compile(r"\[\[(.*?)\]\]")

# ---- templates -----------------------------------------------------------------------------------------------

KINDS = ("pairwise", "grade", "classify")
TEMPLATE_FIELDS = {"pairwise": ("question", "answer_a", "answer_b", "reference", "rubric"),
                   "grade": ("question", "answer", "reference", "rubric"),
                   "classify": ("question", "answer", "reference", "rubric")}
REQUIRED_FIELDS = {"pairwise": ("question", "answer_a", "answer_b"), "grade": ("question", "answer"),
                   "classify": ("question", "answer")}
BUILTIN_TEMPLATES = ("pairwise", "pairwise_reference", "grade", "grade_reference", "refusal", "harm")


@dataclass(frozen=True)
class JudgeTemplate:
    """A judge prompt: text with {placeholders}, where it came from (for errors), and the placeholders it uses."""

    text: str
    source: str
    fields: frozenset[str]

    def format(self, **values: str) -> str:
        return self.text.format(**values)


def load_template(template: str | Path | JudgeTemplate, kind: str) -> JudgeTemplate:
    """A built-in template by name (pairwise, pairwise_reference, grade, grade_reference, refusal, harm) or a file,
    checked for `kind` ("pairwise", "grade" or "classify"): every placeholder must be one the kind fills, and the
    required ones present."""
    if isinstance(template, JudgeTemplate):
        return check_template(template, kind)
    if str(template) in BUILTIN_TEMPLATES:
        source = f"judge_templates/{template}.txt"
        text = resources.files("bridle.feedback").joinpath(source).read_text(encoding="utf-8")
    else:
        path = Path(template).expanduser()
        if not path.is_file():
            raise ConfigError(f"judge template {str(template)!r} is neither a built-in "
                              f"({', '.join(BUILTIN_TEMPLATES)}) nor an existing file.")
        source, text = str(path), path.read_text(encoding="utf-8")
    return check_template(JudgeTemplate(text, source, _placeholders(text, source)), kind)


def check_template(template: JudgeTemplate, kind: str) -> JudgeTemplate:
    if kind not in KINDS:
        raise ValueError(f"unknown judge kind {kind!r}; one of {KINDS}")
    allowed, required = TEMPLATE_FIELDS[kind], REQUIRED_FIELDS[kind]
    unknown = sorted(template.fields - set(allowed))
    if unknown:
        raise ConfigError(f"judge template {template.source}: unknown placeholder(s) "
                          f"{', '.join('{' + f + '}' for f in unknown)}. A {kind} template may use "
                          f"{', '.join('{' + f + '}' for f in allowed)}; write {{{{ and }}}} for literal braces.")
    missing = [f for f in required if f not in template.fields]
    if missing:
        raise ConfigError(f"judge template {template.source} has no {', '.join('{' + f + '}' for f in missing)}; a "
                          f"{kind} template must show the judge {', '.join('{' + f + '}' for f in required)}.")
    return template


def _placeholders(text: str, source: str) -> frozenset[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as e:  # a lone "{" or "}"
        raise ConfigError(f"judge template {source}: {e}. Write {{{{ and }}}} for literal braces.") from e
    for name in names:
        if not name.isidentifier():
            raise ConfigError(f"judge template {source}: placeholder {{{name}}} is not a plain name; use e.g. "
                              "{question}, and {{ }} for literal braces.")
    return frozenset(names)


# ---- strict verdict parsing ----------------------------------------------------------------------------------


def parse_label(reply: str, labels: Sequence[str]) -> str | None:
    """The label when the reply holds exactly one [[...]] and it is one of `labels`; else None."""
    found = _BRACKETED.findall(reply)
    return found[0] if len(found) == 1 and found[0] in labels else None


def parse_pair_verdict(reply: str) -> str | None:
    """"A", "B" or "C" when the reply holds exactly one [[...]] and it is one of those labels; else None."""
    return parse_label(reply, PAIR_LABELS)


def most_probable(probabilities: dict[str, float] | None, labels: Sequence[str], prefix: str
                  ) -> tuple[str | None, str]:
    """A prefilled judge's label (the most probable one; None without probabilities) and the reply it stands for."""
    label = max(labels, key=probabilities.__getitem__) if probabilities else None
    return label, f"{prefix}{label}]]" if label else prefix


def parse_rating(reply: str) -> int | None:
    """The grade when the reply holds exactly one [[...]] and it is a whole number from 1 to 10; else None."""
    found = _BRACKETED.findall(reply)
    if len(found) != 1 or not re.fullmatch(r"\d{1,2}", found[0]):
        return None
    rating = int(found[0])
    return rating if 1 <= rating <= 10 else None
