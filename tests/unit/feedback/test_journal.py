import json

import pytest

from bridle.errors import DataError
from bridle.feedback.journal import Journal


def test_rows_are_on_disk_as_soon_as_written_and_a_rerun_skips_them(tmp_path):
    path = tmp_path / "out.jsonl"
    with Journal(path, "i") as j:
        j.write({"i": 0, "x": "a"})
        assert json.loads(path.read_text().splitlines()[0]) == {"i": 0, "x": "a"}  # before close
        j.write({"i": 1, "x": "b"})
    again = Journal(path, "i")
    assert again.done == {0, 1} and again.resumed == 2 and 1 in again and 2 not in again
    again.write({"i": 2, "x": "c"})
    again.close()
    assert [json.loads(x)["i"] for x in path.read_text().splitlines()] == [0, 1, 2]


def test_a_torn_last_line_is_dropped_counted_and_redone(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}\n{"i": 2, "x": "cut of')
    j = Journal(path, "i")
    assert j.done == {0, 1} and j.torn_lines == 1
    j.write({"i": 2})
    j.close()
    assert path.read_text() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'


def test_a_complete_last_row_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"i": 0}\n{"i": 1}')
    j = Journal(path, "i")
    assert j.done == {0, 1} and j.torn_lines == 0
    j.write({"i": 2})
    j.close()
    assert path.read_text() == '{"i": 0}\n{"i": 1}\n{"i": 2}\n'


def test_a_bad_line_in_the_middle_names_the_file_and_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(DataError, match=r"out.jsonl.*line 2|line 2.*out.jsonl"):
        Journal(path, "i")


def test_fresh_starts_over_and_a_key_function_works(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"i": 0, "k": 1}\n')
    j = Journal(path, lambda r: (r["i"], r["k"]), fresh=True)
    assert j.done == set() and not path.read_text()
    j.write({"i": 0, "k": 1})
    assert (0, 1) in j
    j.close()
