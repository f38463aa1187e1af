"""Prompt datasets for online RL: the prompt of each row, its other fields as columns, bad rows located."""

from __future__ import annotations

import json

import pytest

from bridle.data.prompts import PromptRow, load_prompt_dataset, prompt_of
from bridle.data.sources import RawRow
from bridle.errors import DataError

GSM8K = [
    {"question": "Janet's ducks lay 16 eggs per day. She eats three. How many are left?",
     "answer": "16 - 3 = <<16-3=13>>13\n#### 13"},
    {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber. How many in total?",
     "answer": "2/2=<<2/2=1>>1\n2+1=<<2+1=3>>3\n#### 3"},
]


def write_jsonl(path, rows, *, raw_lines=()):
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gsm8k_rows_give_the_question_as_prompt_and_keep_the_answer(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K)
    rows, report = load_prompt_dataset(path)
    assert rows[0] == PromptRow(GSM8K[0]["question"], {"answer": GSM8K[0]["answer"]}, str(path), 1)
    assert [r.row for r in rows] == [1, 2]
    assert report == f"prompts: 2 rows from {path}"


def test_a_bad_row_errors_with_file_and_row_or_is_skipped_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [GSM8K[0], {"answer": "#### 4"}, GSM8K[1]], raw_lines=["{oops"])
    with pytest.raises(DataError, match=r"p\.jsonl, row 2: the row has no prompt") as info:
        load_prompt_dataset(path)
    assert "--on-bad-row skip" in str(info.value) and info.value.row == 2
    rows, report = load_prompt_dataset(path, on_bad_row="skip")
    assert [r.row for r in rows] == [1, 3]
    assert report == f"prompts: 2 rows from {path} (2 skipped: 1 no prompt, 1 unparseable line)"


def test_limit_keeps_the_first_good_rows(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"answer": "x"}, *GSM8K], raw_lines=[])
    rows, _ = load_prompt_dataset(path, on_bad_row="skip", limit=1)
    assert [r.row for r in rows] == [2]


def test_no_usable_prompts_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"answer": "1"}, {"answer": "2"}])
    with pytest.raises(DataError, match="no usable prompts"):
        load_prompt_dataset(path, on_bad_row="skip")


def test_preference_sft_and_chat_rows_give_their_prompt(tmp_path):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    rows = [
        {"prompt": "Name a color.", "chosen": "Blue.", "rejected": "No."},
        {"prompt": "Say hi.", "completion": "hi"},
        {"messages": chat},
        {"instruction": "Translate.", "input": "chat", "output": "cat"},
        {"chosen": "\n\nHuman: Tell a joke.\n\nAssistant: Knock knock.",
         "rejected": "\n\nHuman: Tell a joke.\n\nAssistant: No."},
    ]
    loaded, _ = load_prompt_dataset(write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert [r.prompt for r in loaded] == ["Name a color.", "Say hi.", chat[:1], "Translate.\n\nchat",
                                          [{"role": "user", "content": "Tell a joke."}]]
    assert loaded[0].columns == {"chosen": "Blue.", "rejected": "No."}
    assert loaded[2].columns == {} and loaded[3].columns == {"output": "cat"}


def test_prompt_of_names_the_row_it_cannot_read():
    assert prompt_of(RawRow("f.jsonl", 3, {"problem": "2+2?", "answer": "4"})) == "2+2?"
    with pytest.raises(DataError, match=r"f\.jsonl, row 4: the row is a list"):
        prompt_of(RawRow("f.jsonl", 4, [1, 2]))


def test_real_gsm8k_test_split_loads(shared_data):
    path = shared_data / "gsm8k" / "test.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    rows, report = load_prompt_dataset(str(path), limit=50)
    assert len(rows) == 50 and report.startswith("prompts: 50 rows from")
    assert all(isinstance(r.prompt, str) and "####" in r.columns["answer"] for r in rows)
