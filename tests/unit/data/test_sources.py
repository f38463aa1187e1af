"""Loading raw rows from every supported source, with 1-based row numbers that match the file."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from bridle.data import RawRow, load_rows
from bridle.errors import DataError

ROWS = [{"prompt": "Hi", "completion": "Hello"}, {"prompt": "Bye", "completion": "Ciao"}]


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_python_list_rows_are_named_list_and_numbered_from_one() -> None:
    rows = load_rows(ROWS)
    assert rows == [RawRow("<list>", 1, ROWS[0]), RawRow("<list>", 2, ROWS[1])]


def test_jsonl_blank_lines_are_skipped_but_row_numbers_stay_line_numbers(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [json.dumps(ROWS[0]), "", json.dumps(ROWS[1])])
    rows = load_rows(path)
    assert [(r.row, r.value) for r in rows] == [(1, ROWS[0]), (3, ROWS[1])]
    assert rows[0].source == str(path)


def test_jsonl_unparseable_line_becomes_row_with_parse_error(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [json.dumps(ROWS[0]), '{"prompt": "x",'])
    rows = load_rows(str(path))
    assert rows[0].parse_error is None
    assert rows[1].row == 2 and rows[1].parse_error and "not valid JSON" in rows[1].parse_error


def test_jsonl_gz_is_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in ROWS))
    assert [r.value for r in load_rows(path)] == ROWS


def test_json_list_and_data_wrapper_both_load(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    (tmp_path / "b.json").write_text(json.dumps({"data": ROWS}))
    assert [r.value for r in load_rows(tmp_path / "a.json")] == ROWS
    assert [r.value for r in load_rows(tmp_path / "b.json")] == ROWS


def test_json_that_is_not_a_list_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(DataError, match="list of objects"):
        load_rows(tmp_path / "a.json")


def test_csv_rows_load_as_dicts(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["prompt", "completion"])
        writer.writeheader()
        writer.writerows(ROWS)
    rows = load_rows(path)
    assert [r.value for r in rows] == ROWS and [r.row for r in rows] == [1, 2]


def test_parquet_rows_load_as_dicts(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert [r.value for r in load_rows(path)] == ROWS


def test_unknown_extension_names_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(DataError, match=r"unsupported file extension.*\n.*\.jsonl"):
        load_rows(tmp_path / "d.txt")


def test_missing_local_file_says_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as info:
        load_rows(tmp_path / "nope.jsonl")
    assert info.value.source == str(tmp_path / "nope.jsonl")


def test_hub_id_unreachable_says_so_and_shows_local_file_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'owner/name' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="hub could not be reached") as info:
        load_rows("owner/name")
    assert "--data path/to/file.jsonl" in str(info.value)


def test_hub_id_loads_split_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    seen = {}

    def fake(dataset_id: str, split: str) -> list[dict]:
        seen.update(id=dataset_id, split=split)
        return ROWS

    monkeypatch.setattr(datasets, "load_dataset", fake)
    rows = load_rows("owner/name", split="test")
    assert seen == {"id": "owner/name", "split": "test"}
    assert [r.value for r in rows] == ROWS and rows[0].source == "owner/name[test]"
