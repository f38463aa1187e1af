"""Built-in verifiable rewards, in TRL's reward-function convention so users' own functions plug in the same way:

    fn(prompts: list, completions: list[str], **columns: list) -> list[float | None]

Each dataset column (e.g. GSM8K's "answer") arrives as a list aligned with `completions`. None means "no opinion
on this sample" (the gold answer cannot be read); `FunctionSource` scores it 0.0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

RewardFunction = Callable[..., list[float | None]]

DEFAULT_MAX_WORDS = 200
# 1,234,567 (commas only in groups of three) or 1234; optional sign and decimals. "$" and a final "." fall outside.
_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(rf"(?<!\d){_NUMBER}")
_ANSWER_IS = re.compile(r"answer\s+is|answer\s*:", re.IGNORECASE)
_ANSWER_LINE = re.compile(rf"^\s*(?:answer\s*:|####)\s*\$?\s*({_NUMBER})\s*\.?\s*$", re.IGNORECASE)


def extract_final_number(text: str) -> str | None:
    """The final numeric answer of a GSM8K-style solution, normalized ("1,234.0" → "1234"), or None.

    Looks, in order, after the last "####", inside the last \\boxed{...}, after the last "answer is" /
    "Answer:", and finally takes the last number anywhere in the text. A marker with no number after it falls
    through to the next rule.
    """
    if not isinstance(text, str):
        return None
    candidates = []
    if "####" in text:
        candidates.append(text.rsplit("####", 1)[1])
    boxed = _last_boxed(text)
    if boxed is not None:
        candidates.append(boxed)
    answer_is = list(_ANSWER_IS.finditer(text))
    if answer_is:
        candidates.append(text[answer_is[-1].end():])
    for part in candidates:
        found = _NUMBER_RE.search(part)
        if found:
            return _canonical(found.group())
    numbers = _NUMBER_RE.findall(text)
    return _canonical(numbers[-1]) if numbers else None


def math_exact_match(prompts: Sequence[Any], completions: Sequence[str], answer: Sequence[Any], **_: Any
                     ) -> list[float | None]:
    """1.0 when the completion's final number equals the gold one (GSM8K gold: "... #### 72"), else 0.0; None
    when the gold answer holds no number. Numbers only: MATH-style LaTeX answers need a symbolic checker."""
    if len(answer) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(answer)} answers")
    scores: list[float | None] = []
    for completion, gold in zip(completions, answer):
        gold_number = extract_final_number(str(gold))
        if gold_number is None:
            scores.append(None)
        else:
            scores.append(1.0 if extract_final_number(completion) == gold_number else 0.0)
    return scores


def format_answer_line(prompts: Sequence[Any], completions: Sequence[str], **_: Any) -> list[float | None]:
    """1.0 when the last non-empty line is "Answer: <number>" or "#### <number>", else 0.0: a format reward that
    teaches the policy to state its answer where `math_exact_match` reads it."""
    scores: list[float | None] = []
    for completion in completions:
        lines = [line for line in str(completion).splitlines() if line.strip()]
        scores.append(1.0 if lines and _ANSWER_LINE.match(lines[-1]) else 0.0)
    return scores


def length_limit(prompts: Sequence[Any], completions: Sequence[str], max_words: int = DEFAULT_MAX_WORDS,
                 **_: Any) -> list[float | None]:
    """0 up to `max_words` words, then −(words − max_words) / max_words: −1.0 at twice the limit. A guard against
    rambling that leaves answers within the limit untouched."""
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    return [-max(len(str(c).split()) - max_words, 0) / max_words for c in completions]


def make_length_limit(max_words: int) -> RewardFunction:
    """`length_limit` with another word limit, e.g. `make_length_limit(400)`."""
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    fn = partial(length_limit, max_words=max_words)
    fn.__name__ = f"length_limit_{max_words}"  # type: ignore[attr-defined]
    return fn


BUILTINS: dict[str, RewardFunction] = {
    "math_exact_match": math_exact_match,
    "format_answer_line": format_answer_line,
    "length_limit": length_limit,
}


def _last_boxed(text: str) -> str | None:
    """The contents of the last \\boxed{...}, braces matched, or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return text[i + 1:]  # unclosed: take the rest


def _canonical(number: str) -> str:
    """"1,234.50" → "1234.5", "42.0" → "42", "-0" → "0", "007" → "7"."""
    number = number.replace(",", "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    sign, body = ("-", number[1:]) if number.startswith("-") else ("", number)
    body = body.lstrip("0")
    if not body or body.startswith("."):
        body = "0" + body
    return "0" if body == "0" else sign + body
