"""Rows written as they are made, so a killed run resumes where it stopped.

Every data generator (`bridle rlaif`, `constitute`, `redteam`, `curate`, `eval`) appends each finished row to a
JSONL file and flushes it at once. On a rerun the `Journal` reads what is there, keys each row (e.g. by prompt index),
and the command skips the keys already done. A last line cut off by the kill (no newline, or not JSON) is dropped
from the file, and counted; a bad line anywhere else is an error naming it, since that file was not written by us.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bridle.errors import DataError

Key = Callable[[dict[str, Any]], Any]


class Journal:
    """An append-only JSONL file of rows, keyed for resuming. Use as a context manager (closes the file)."""

    def __init__(self, path: str | Path, key: str | Key, *, fresh: bool = False) -> None:
        self.path = Path(path)
        self.key: Key = (lambda row: row.get(key)) if isinstance(key, str) else key
        self.rows: list[dict[str, Any]] = []
        self.torn_lines = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            self._read()
        self.done = {self.key(row) for row in self.rows}
        self.resumed = len(self.rows)
        self._file = self.path.open("a", encoding="utf-8")

    def _read(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        good_bytes = 0
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            if last and not line:
                break
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                if last or (number == len(lines) - 1 and not lines[-1]):
                    self.torn_lines += 1  # cut off by a kill: redo that row
                    break
                raise DataError(f"line {number} is not a JSON object ({e}); this file was not written by Bridle, "
                                "or was edited.", source=str(self.path),
                                hint="Move it away, or pass --overwrite to start again.") from None
            if last:  # valid JSON but no newline: the write was cut before its "\n"; keep it, finish the line
                self.rows.append(row)
                good_bytes += len(line)
                with self.path.open("ab") as f:
                    f.write(b"\n")
                good_bytes += 1
                break
            self.rows.append(row)
            good_bytes += len(line) + 1
        if good_bytes < len(data) and self.torn_lines:
            with self.path.open("r+b") as f:
                f.truncate(good_bytes)

    def __contains__(self, key: Any) -> bool:
        return key in self.done

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def write(self, row: dict[str, Any]) -> None:
        """Append one row and flush it to disk."""
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)
        self.done.add(self.key(row))

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
