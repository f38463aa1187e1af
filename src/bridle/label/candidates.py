"""Read candidate files into the pairs annotators compare.

Every shape Bridle writes (and the usual hand-made ones) is accepted, one row at a time:

- `{"prompt", "response_a", "response_b"}`: one pair as it is (optional "model_a" / "model_b").
- `{"prompt", "chosen", "rejected"}` (`bridle rlaif` pairs.jsonl, DPO data, hh-rlhf dialogues): one pair; the
  annotator is not told which side the file preferred (sides are shown in random order anyway).
- `{"prompt", "responses": [...]}` (ranked / best-of-n style) or `{"prompt", "candidates": [...]}` (`bridle rlaif`
  judgements.jsonl): every pair of distinct responses of the row.
- `{"prompt", "completion" | "output"}` rows (`bridle best-of-n` output, `bridle eval` generations.jsonl with
  "model" and "prompt_index"): rows with the same prompt are grouped and every pair of distinct answers is formed,
  between different models when rows name one.

A gold file (`read_gold`) holds pairs with a known answer: preference rows (the answer is "chosen"), or
`{"prompt", "response_a", "response_b", "answer": "A" | "B" | "tie" | "both_bad"}`.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridle.data.chat import Prompt
from bridle.data.formats import BadRow, normalize_value, parse_messages
from bridle.data.prompts import prompt_of
from bridle.data.sources import RawRow, load_rows
from bridle.errors import DataError

CHOICES = ("a", "b", "tie", "both_bad")  # a verdict on a pair, in the pair's own order: a = response_a is better
SHAPES_HINT = ('Candidate rows need "prompt" (text or chat messages) and one of: "response_a" + "response_b"; '
               '"chosen" + "rejected"; "responses" (or "candidates"), a list of 2 or more; or "completion" / '
               '"output" (rows with the same prompt are paired).')
GOLD_HINT = ('Gold rows are preference rows ("prompt", "chosen", "rejected": the answer is "chosen") or "prompt", '
             '"response_a", "response_b" and "answer": "A", "B", "tie" or "both_bad".')


@dataclass(frozen=True)
class Pair:
    """Two responses to one prompt. `gold` is the known answer of a gold pair (one of CHOICES), else None."""

    prompt: Prompt
    response_a: Prompt
    response_b: Prompt
    source: str
    source_row: int
    model_a: str | None = None
    model_b: str | None = None
    prompt_index: int | None = None
    gold: str | None = None


def read_candidates(path: str | Path, *, pairs_per_prompt: int = 0, seed: int = 0) -> list[Pair]:
    """Every pair to label in `path` (see the module docstring for the shapes). With `pairs_per_prompt` > 0, a prompt
    with more pairs keeps that many, drawn with `seed`. A bad row raises `DataError` naming file, row and field."""
    name = str(path)
    pairs: list[Pair] = []
    groups: dict[str, list[tuple[RawRow, str, Prompt, Prompt]]] = {}  # prompt key -> (row, model, prompt, answer)
    for raw in load_rows(path):
        value = _mapping(raw, name)
        if "response_a" in value or "response_b" in value:
            pairs.append(_explicit_pair(raw, value, name))
        elif "chosen" in value or "rejected" in value:
            pairs.append(_preference_pair(raw, name))
        elif "responses" in value or "candidates" in value:
            field = "responses" if "responses" in value else "candidates"
            pairs.extend(_cap(_list_pairs(raw, value, field, name), pairs_per_prompt, seed, raw.row))
        elif "completion" in value or "output" in value:
            field = "completion" if "completion" in value else "output"
            prompt = _prompt(raw, name)
            answer = _response(value.get(field), field, raw, name)
            model = str(value.get("model") or f"row {raw.row}")
            groups.setdefault(_key(prompt), []).append((raw, model, prompt, answer))
        else:
            raise DataError(f"cannot tell the row's shape from its fields {sorted(value)}.", source=name,
                            row=raw.row, hint=SHAPES_HINT)
    for group in groups.values():
        pairs.extend(_cap(_grouped_pairs(group, name), pairs_per_prompt, seed, group[0][0].row))
    if not pairs:
        raise DataError("no pairs to label (every prompt needs two different responses).", source=name,
                        hint=SHAPES_HINT)
    return pairs


def read_gold(path: str | Path) -> list[Pair]:
    """Gold pairs with their known answers (see the module docstring)."""
    name = str(path)
    pairs = []
    for raw in load_rows(path):
        value = _mapping(raw, name)
        if "chosen" in value or "rejected" in value:
            pair = _preference_pair(raw, name)
            pairs.append(Pair(**{**pair.__dict__, "gold": "a"}))
        elif "response_a" in value or "response_b" in value:
            answer = str(value.get("answer", "")).strip().lower().replace(" ", "_").replace("-", "_")
            if answer not in CHOICES:
                raise DataError(f'field "answer" must be "A", "B", "tie" or "both_bad", got {value.get("answer")!r}.',
                                source=name, row=raw.row, field="answer", hint=GOLD_HINT)
            pairs.append(Pair(**{**_explicit_pair(raw, value, name).__dict__, "gold": answer}))
        else:
            raise DataError(f"a gold row needs a known answer; its fields are {sorted(value)}.", source=name,
                            row=raw.row, hint=GOLD_HINT)
    if not pairs:
        raise DataError("no gold pairs.", source=name, hint=GOLD_HINT)
    return pairs


def pair_key(pair: Pair) -> str:
    """The same prompt and the same two responses (in either order) give the same key: loading twice adds nothing."""
    a, b = sorted((_key(pair.response_a), _key(pair.response_b)))
    return json.dumps([_key(pair.prompt), a, b, pair.gold is not None], ensure_ascii=False)


# ---- one reader per shape ------------------------------------------------------------------------------------


def _mapping(raw: RawRow, name: str) -> Mapping[str, Any]:
    if raw.parse_error is not None:
        raise DataError(f"the line cannot be parsed: {raw.parse_error}.", source=name, row=raw.row)
    if not isinstance(raw.value, Mapping):
        raise DataError(f"the row is a {type(raw.value).__name__}, not a JSON object.", source=name, row=raw.row,
                        hint=SHAPES_HINT)
    return raw.value


def _prompt(raw: RawRow, name: str) -> Prompt:
    """The row's prompt (`prompt_of` names file, row and field when there is none)."""
    return prompt_of(raw)


def _response(value: Any, field: str, raw: RawRow, name: str) -> Prompt:
    """A response: non-empty text, or a list of chat messages."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list):
        try:
            return parse_messages(value, field)
        except BadRow as e:
            raise DataError(e.message, source=name, row=raw.row, field=field, hint=SHAPES_HINT) from None
    got = "empty" if isinstance(value, str) or value is None else f"a {type(value).__name__}"
    raise DataError(f'field "{field}" must be text or chat messages, got {got}.', source=name, row=raw.row,
                    field=field, hint=SHAPES_HINT)


def _explicit_pair(raw: RawRow, value: Mapping[str, Any], name: str) -> Pair:
    a = _response(value.get("response_a"), "response_a", raw, name)
    b = _response(value.get("response_b"), "response_b", raw, name)
    if a == b:
        raise DataError('"response_a" and "response_b" are identical; there is nothing to choose.', source=name,
                        row=raw.row, field="response_b")
    return Pair(_prompt(raw, name), a, b, name, raw.row, _name(value.get("model_a")), _name(value.get("model_b")),
                _index(value))


def _preference_pair(raw: RawRow, name: str) -> Pair:
    try:
        record = normalize_value(raw, "preference")
    except BadRow as e:
        raise DataError(e.message, source=name, row=raw.row, field=e.field, hint=SHAPES_HINT) from None
    value = raw.value
    return Pair(record["prompt"], record["chosen"], record["rejected"], name, raw.row,
                _name(value.get("chosen_model")), _name(value.get("rejected_model")), _index(value))


def _list_pairs(raw: RawRow, value: Mapping[str, Any], field: str, name: str) -> list[Pair]:
    items = value.get(field)
    if not isinstance(items, list) or len(items) < 2:
        raise DataError(f'field "{field}" must be a list of 2 or more responses.', source=name, row=raw.row,
                        field=field, hint=SHAPES_HINT)
    responses = [_response(r, f"{field}[{i}]", raw, name) for i, r in enumerate(items)]
    models = value.get("models") if isinstance(value.get("models"), list) else []
    distinct: dict[str, tuple[Prompt, str | None]] = {}  # a repeated text is one candidate (its first model)
    for i, response in enumerate(responses):
        distinct.setdefault(_key(response), (response, _name(models[i]) if i < len(models) else None))
    prompt = _prompt(raw, name)
    return [Pair(prompt, a, b, name, raw.row, model_a, model_b, _index(value))
            for (a, model_a), (b, model_b) in itertools.combinations(distinct.values(), 2)]


def _grouped_pairs(group: Sequence[tuple[RawRow, str, Prompt, Prompt]], name: str) -> list[Pair]:
    named = any(not m.startswith("row ") for _, m, _, _ in group)
    out = []
    for (raw_a, model_a, prompt, a), (_, model_b, _, b) in itertools.combinations(group, 2):
        if a == b or (named and model_a == model_b):
            continue
        out.append(Pair(prompt, a, b, name, raw_a.row, None if model_a.startswith("row ") else model_a,
                        None if model_b.startswith("row ") else model_b, _index(raw_a.value)))
    return out


def _cap(pairs: list[Pair], limit: int, seed: int, row: int) -> list[Pair]:
    if limit <= 0 or len(pairs) <= limit:
        return pairs
    keep = sorted(random.Random(f"{seed}:{row}").sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def _key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _name(value: Any) -> str | None:
    return None if value is None else str(value)


def _index(value: Any) -> int | None:
    index = value.get("prompt_index") if isinstance(value, Mapping) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None
