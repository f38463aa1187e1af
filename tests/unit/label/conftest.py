"""Fixtures for the labelling app's tests: a database of pairs in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridle.label import db
from bridle.label.candidates import Pair


@pytest.fixture
def make_db(tmp_path: Path):
    """make_db(pairs, gold=[], k=3, gold_rate=0.0) -> (path, connection)."""
    made = []

    def make(pairs: list[Pair], gold: list[Pair] = (), *, k: int = 3, gold_rate: float = 0.0,
             lease_seconds: float = 900.0):
        path = tmp_path / f"labels{len(made)}.sqlite"
        db.init_db(path)
        conn = db.open_db(path)
        db.add_pairs(conn, [*pairs, *gold])
        db.set_settings(conn, {"votes_per_pair": k, "gold_rate": gold_rate, "lease_seconds": lease_seconds})
        made.append(conn)
        return path, conn

    yield make
    for conn in made:
        conn.close()
