"""The quickstart's data rows and its check, against rows and verdicts written here by hand."""

from __future__ import annotations

import json

import pytest

from bridle.quickstart.checks import is_one_short_sentence, one_short_sentence
from bridle.quickstart.data import FILLERS, items, split, write_data


def test_rows_are_exactly_the_short_and_padded_answers(tmp_path):
    first = items()[0]
    assert (first.topic, first.prompt, first.short) == ("capital", "What is the capital of France?",
                                                        "The capital of France is Paris.")
    assert any(first.long == f"{a} The capital of France is Paris. {b}" for a, b in FILLERS)
    paths = write_data(tmp_path, held_out=40)
    rows = {k: [json.loads(x) for x in p.read_text().splitlines()] for k, p in paths.items()}
    assert len(rows["sft"]) == len(rows["pairs"]) == len(rows["prompts"]) == 50 and len(rows["held_out"]) == 40
    by_prompt = {i.prompt: i for i in items()}
    for row in rows["pairs"]:
        item = by_prompt[row["prompt"]]
        assert (row["chosen"], row["rejected"]) == (item.short, item.long)
    assert {r["prompt"] for r in rows["sft"]}.isdisjoint({r["prompt"] for r in rows["held_out"]})
    assert all(r["reference"] == by_prompt[r["prompt"]].short for r in rows["held_out"])


def test_the_split_is_seeded_and_every_short_answer_passes_the_check_and_no_long_one_does():
    assert split(items(), 10, seed=3) == split(items(), 10, seed=3) != split(items(), 10, seed=4)
    assert len({i.prompt for i in items()}) == 90
    assert all(is_one_short_sentence(i.short) for i in items())
    assert not any(is_one_short_sentence(i.long) for i in items())


@pytest.mark.parametrize("text, want", [
    ("The capital of France is Paris.", True), ("Paris.", True), ("Is it Paris?", True),
    ('The opposite of "hot" is "cold".', True), ("2.5 plus 1 is 3.5.", True), ('He said "hi."', True),
    ("Paris", False), ("It is Paris. Nice!", False), ("Sure! The capital is Paris.", False), ("", False),
    (" ".join(["word"] * 21) + ".", False), (" ".join(["word"] * 20) + ".", True)])
def test_one_short_sentence_by_hand(text, want):
    assert is_one_short_sentence(text) is want


def test_the_rule_reads_conversations_too():
    assert one_short_sentence(["Yes.", [{"role": "assistant", "content": "No. Never."}]]) == [1.0, 0.0]
