"""Turn canonical SFT records into token ids and loss labels, rendering chat messages with the tokenizer's template.

Masks are built from lengths, never by comparing ids with `pad_token_id`: chat tokenizers often use their EOS
(`<|im_end|>`) as pad, and the model must still learn to emit it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bridle.data.formats import NEEDS, SKIP_HINT, BadRows, normalize
from bridle.data.sources import load_rows
from bridle.errors import DataError

IGNORE_INDEX = -100
PROMPT_TOO_LONG = "prompt longer than max_length"


@dataclass
class TokenizedExample:
    """One tokenized example. `labels` is -100 where no loss is taken; `template_mismatch` is set when the
    chat template rendered the prompt differently alone than inside the full conversation."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    template_mismatch: bool = False


@dataclass
class DataReport:
    """What happened to the rows on their way to examples, in numbers the user can check."""

    rows: int
    kept: int
    bad: BadRows = field(default_factory=BadRows)
    truncated: int = 0
    template_mismatch: int = 0
    max_length: int | None = None

    def summary(self) -> str:
        skipped = self.bad.total()
        text = f"{self.rows} rows: {self.kept} kept"
        if skipped:
            text += f", {skipped} skipped ({self.bad.reasons()})"
        notes = []
        if self.truncated:
            notes.append(f"{self.truncated} truncated to {self.max_length} tokens")
        if self.template_mismatch:
            notes.append(f"{self.template_mismatch} with a chat-template prefix mismatch (prompt boundary "
                         "taken at the longest common prefix)")
        return "; ".join([text, *notes])


class PromptTooLong(DataError):
    """The prompt fills `max_length`, so no completion token would remain to learn from."""

    def __init__(self, prompt_len: int, max_length: int, source: str | None, row: int | None) -> None:
        self.message = f"prompt is {prompt_len} tokens, longer than max_length {max_length}."
        super().__init__(self.message, source=source, row=row, field="prompt",
                         hint="Raise --max-length or shorten the prompt.")


def _ids(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _render(tokenizer: Any, messages: list[dict], *, add_generation_prompt: bool) -> str:
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_prompt_completion(record: Mapping, tokenizer: Any) -> tuple[list[int], int, bool]:
    """Return (ids, prompt_length, template_mismatch) for a prompt/completion record (text or messages)."""
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, list) or isinstance(completion, list):
        prompt_msgs = prompt if isinstance(prompt, list) else ([{"role": "user", "content": prompt}] if prompt else [])
        completion_msgs = (completion if isinstance(completion, list)
                           else [{"role": "assistant", "content": completion}])
        prompt_ids = _ids(tokenizer, _render(tokenizer, prompt_msgs, add_generation_prompt=True))
        ids = _ids(tokenizer, _render(tokenizer, prompt_msgs + completion_msgs, add_generation_prompt=False))
        if ids[: len(prompt_ids)] == prompt_ids:
            return ids, len(prompt_ids), False
        return ids, _common_prefix(ids, prompt_ids), True
    prompt_ids = _ids(tokenizer, prompt)
    ids = prompt_ids + _ids(tokenizer, completion)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)  # so the model learns to stop
    return ids, len(prompt_ids), False


def tokenize_sft(record: Mapping, tokenizer: Any, *, max_length: int,
                 completion_only: bool = True) -> TokenizedExample:
    """Tokenize one canonical SFT record; with `completion_only` the prompt positions get label -100.

    Longer sequences are cut from the right to `max_length`. A prompt of `max_length` tokens or more leaves
    nothing to learn from, so it raises `DataError` (field "prompt") for the caller to skip or report.
    """
    ids, prompt_len, mismatch = encode_prompt_completion(record, tokenizer)
    if prompt_len >= max_length:
        source, row = record.get("_row", (None, None))
        raise PromptTooLong(prompt_len, max_length, source, row)
    labels = list(ids)
    if completion_only:
        labels[:prompt_len] = [IGNORE_INDEX] * prompt_len
    truncated = len(ids) > max_length
    return TokenizedExample(ids[:max_length], labels[:max_length], truncated, mismatch)


def build_sft_examples(records: Iterable[Mapping], tokenizer: Any, *, max_length: int,
                       completion_only: bool = True,
                       on_bad_row: Literal["error", "skip"] = "error") -> tuple[list[TokenizedExample], DataReport]:
    """Tokenize every record; prompts too long for `max_length` raise ("error") or are counted ("skip")."""
    examples: list[TokenizedExample] = []
    report = DataReport(rows=0, kept=0, max_length=max_length)
    for record in records:
        report.rows += 1
        try:
            example = tokenize_sft(record, tokenizer, max_length=max_length, completion_only=completion_only)
        except PromptTooLong as e:
            if on_bad_row == "error":
                raise DataError(e.message, source=e.source, row=e.row, field=e.field,
                                hint=f"{e.hint}\n{SKIP_HINT}") from None
            report.bad.add(PROMPT_TOO_LONG, e.source, e.row, e.message)
            continue
        examples.append(example)
        report.truncated += example.truncated
        report.template_mismatch += example.template_mismatch
    report.kept = len(examples)
    return examples, report


def load_sft_dataset(source: str | os.PathLike | Sequence[Mapping], tokenizer: Any, *, max_length: int,
                     completion_only: bool = True, on_bad_row: Literal["error", "skip"] = "error",
                     split: str = "train") -> tuple[list[TokenizedExample], DataReport]:
    """load_rows → normalize(kind="sft") → build_sft_examples, with both steps' bad rows in one report."""
    rows = load_rows(source, split=split)
    if not rows:
        raise DataError("no rows found.", source=str(source) if isinstance(source, (str, os.PathLike)) else "<list>",
                        hint=NEEDS["sft"])
    records, bad = normalize(rows, "sft", on_bad_row=on_bad_row)
    examples, report = build_sft_examples(records, tokenizer, max_length=max_length,
                                          completion_only=completion_only, on_bad_row=on_bad_row)
    bad.merge(report.bad)
    report.bad, report.rows = bad, len(rows)
    if not examples:
        raise DataError(f"no usable rows: {report.summary()}.", source=rows[0].source,
                        hint=f"{NEEDS['sft']}\n" + "\n".join(bad.examples[:3]))
    return examples, report
