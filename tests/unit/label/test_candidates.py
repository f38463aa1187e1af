"""Candidate files of every shape Bridle writes become pairs; bad rows are named by file, row and field."""

from __future__ import annotations

import pytest
from label_helpers import write_jsonl

from bridle.errors import DataError
from bridle.label.candidates import pair_key, read_candidates, read_gold

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def test_explicit_pair_keeps_prompt_conversation_and_models(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": CHAT, "response_a": "Hello.", "response_b": "Hey!",
                                                 "model_a": "m1", "model_b": "m2", "prompt_index": 4}])
    [pair] = read_candidates(path)
    assert pair.prompt == CHAT and (pair.response_a, pair.response_b) == ("Hello.", "Hey!")
    assert (pair.model_a, pair.model_b, pair.prompt_index, pair.source_row, pair.gold) == ("m1", "m2", 4, 1, None)


def test_chosen_rejected_rows_and_hh_dialogues_become_pairs(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"prompt": "Q1", "chosen": "good", "rejected": "bad"},
        {"chosen": "\n\nHuman: Q2\n\nAssistant: yes", "rejected": "\n\nHuman: Q2\n\nAssistant: no"}])
    first, second = read_candidates(path)
    assert (first.prompt, first.response_a, first.response_b) == ("Q1", "good", "bad")
    assert second.prompt == [{"role": "user", "content": "Q2"}]
    assert second.response_a == [{"role": "assistant", "content": "yes"}]


def test_responses_list_gives_every_distinct_pair(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Q", "responses": ["x", "y", "x", "z"],
                                                 "scores": [1, 2, 3, 4]}])
    pairs = read_candidates(path)
    assert [(p.response_a, p.response_b) for p in pairs] == [("x", "y"), ("x", "z"), ("y", "z")]


def test_pair_key_ignores_response_order(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Q", "response_a": "x", "response_b": "y"},
                                              {"prompt": "Q", "response_a": "y", "response_b": "x"},
                                              {"prompt": "Q2", "response_a": "y", "response_b": "x"}])
    first, swapped, other = read_candidates(path)
    assert pair_key(first) == pair_key(swapped) != pair_key(other)


def test_rlaif_judgements_candidates_are_paired(tmp_path):
    path = write_jsonl(tmp_path / "j.jsonl", [{"prompt_index": 0, "prompt": "Q", "candidates": ["a", "b", "c"],
                                               "pairs": []}])
    assert len(read_candidates(path)) == 3


def test_eval_generations_pair_different_models_on_the_same_prompt(tmp_path):
    rows = [{"prompt_index": i, "model": m, "prompt": f"P{i}", "output": f"{m} says {i}"}
            for m in ("base", "tuned", "big") for i in range(2)]
    pairs = read_candidates(write_jsonl(tmp_path / "generations.jsonl", rows))
    assert len(pairs) == 6  # 2 prompts × 3 model pairs
    assert all(p.model_a != p.model_b and p.response_a.startswith(p.model_a) for p in pairs)
    assert {p.prompt_index for p in pairs} == {0, 1}


def test_best_of_n_rows_group_by_prompt(tmp_path):
    rows = [{"prompt": "Q", "completion": "one", "score": 1.0, "all_scores": [1.0]},
            {"prompt": "Q", "completion": "two", "score": 0.5, "all_scores": [0.5]},
            {"prompt": "R", "completion": "alone", "score": 0.1, "all_scores": [0.1]}]
    [pair] = read_candidates(write_jsonl(tmp_path / "bon.jsonl", rows))
    assert (pair.response_a, pair.response_b, pair.model_a) == ("one", "two", None)


def test_pairs_per_prompt_caps_many_response_rows(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "Q", "responses": [str(i) for i in range(6)]}])
    assert len(read_candidates(path)) == 15
    capped = read_candidates(path, pairs_per_prompt=4, seed=1)
    assert len(capped) == 4 and capped == read_candidates(path, pairs_per_prompt=4, seed=1)


@pytest.mark.parametrize("row, field", [
    ({"prompt": "Q", "response_a": "x", "response_b": ""}, "response_b"),
    ({"prompt": "Q", "response_a": "x", "response_b": 3}, "response_b"),
    ({"prompt": "Q", "responses": ["only one"]}, "responses"),
    ({"prompt": "Q", "responses": ["x", [{"role": "wizard", "content": "y"}]]}, "responses[1]"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, row, field):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "ok", "response_a": "1", "response_b": "2"}, row])
    with pytest.raises(DataError) as err:
        read_candidates(path)
    assert err.value.row == 2 and err.value.field == field and str(path) in str(err.value)


def test_unknown_shape_says_which_shapes_work(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "Q", "answer": "x"}])
    with pytest.raises(DataError, match='"response_a" \\+ "response_b"'):
        read_candidates(path)


def test_gold_answers_from_preference_rows_and_answer_field(tmp_path):
    path = write_jsonl(tmp_path / "gold.jsonl", [
        {"prompt": "Q", "chosen": "right", "rejected": "wrong"},
        {"prompt": "R", "response_a": "meh", "response_b": "also meh", "answer": "Both bad"},
        {"prompt": "S", "response_a": "1", "response_b": "2", "answer": "B"}])
    assert [p.gold for p in read_gold(path)] == ["a", "both_bad", "b"]


def test_gold_without_answer_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "gold.jsonl", [{"prompt": "Q", "response_a": "1", "response_b": "2"}])
    with pytest.raises(DataError, match='"answer"') as err:
        read_gold(path)
    assert err.value.row == 1
