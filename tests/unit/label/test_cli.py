"""`bridle label serve | add-annotator | export`: flags reach the work; tokens are printed once, stored hashed."""

from __future__ import annotations

import argparse
import json

import pytest
from label_helpers import cast, write_jsonl

from bridle.cli import label_commands
from bridle.errors import BridleError, ConfigError
from bridle.label import db, server
from bridle.label.server import is_loopback, prepare


def run(argv: list[str]) -> None:
    """What `bridle label ...` does, without building every training command's parser (which imports torch)."""
    parser = argparse.ArgumentParser(prog="bridle")
    label_commands.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.func(args)


@pytest.fixture
def candidates(tmp_path):
    return write_jsonl(tmp_path / "c.jsonl", [{"prompt": f"q{i}", "response_a": f"x{i}", "response_b": f"y{i}"}
                                              for i in range(3)])


def test_serve_flags_reach_serve_and_bind_loopback_by_default(monkeypatch, tmp_path, candidates):
    seen = {}
    monkeypatch.setattr(server, "serve", lambda db_path, **kw: seen.update(kw, db=db_path))
    run(["label", "serve", "--db", str(tmp_path / "l.sqlite"), "--data", str(candidates), "--data", "more.jsonl",
         "--gold", "g.jsonl", "--votes-per-pair", "5", "--gold-rate", "0.2", "--lease-seconds", "60",
         "--reward-model", "rm", "--pairs-per-prompt", "3", "--seed", "7", "--max-body-bytes", "1000"])
    assert seen == {"db": str(tmp_path / "l.sqlite"), "host": "127.0.0.1", "port": 8765, "max_body_bytes": 1000,
                    "data": [str(candidates), "more.jsonl"], "gold": ["g.jsonl"], "votes_per_pair": 5,
                    "gold_rate": 0.2, "lease_seconds": 60.0, "pairs_per_prompt": 3, "seed": 7, "reward_model": "rm"}


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")


def test_add_annotator_prints_the_token_once_and_stores_its_hash(tmp_path, capsys):
    path = tmp_path / "l.sqlite"
    run(["label", "add-annotator", "ada", "--db", str(path), "--admin"])
    out = capsys.readouterr()
    token = out.out.strip()
    assert len(token) >= 40 and "ada" in out.err and token not in out.err
    conn = db.open_db(path)
    assert db.annotator_by_token(conn, token).admin is True
    stored = conn.execute("SELECT token_hash FROM annotators").fetchone()[0]
    assert stored == db.hash_token(token)
    on_disk = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("l.sqlite"))
    assert token.encode() not in on_disk
    with pytest.raises(BridleError, match="already exists"):
        run(["label", "add-annotator", "ada", "--db", str(path)])
    run(["label", "add-annotator", "ada", "--db", str(path), "--new-token"])
    assert db.annotator_by_token(conn, token) is None  # the old token stops working
    assert db.annotator_by_token(conn, capsys.readouterr().out.strip()).name == "ada"


def test_export_command_writes_rows_and_prints_the_summary(tmp_path, capsys, candidates):
    path = tmp_path / "l.sqlite"
    prepare(path, data=[str(candidates)], votes_per_pair=1)
    conn = db.open_db(path)
    cast(conn, {1: ["a"], 2: ["tie"], 3: ["b"]})
    out = tmp_path / "prefs.jsonl"
    run(["label", "export", "--db", str(path), "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("x0", "y0"), ("y2", "x2")]
    assert "wrote 2 preferences rows" in capsys.readouterr().out
    run(["label", "export", "--db", str(path), "--out", str(out), "--format", "verdicts"])
    assert [json.loads(line)["winner"] for line in out.read_text().splitlines()] == ["A", "tie", "B"]


def test_prepare_keeps_settings_and_loads_pairs_once(tmp_path, candidates):
    path = tmp_path / "l.sqlite"
    prepare(path, data=[str(candidates)], votes_per_pair=4, gold_rate=0.25)
    lines = prepare(path, data=[str(candidates)])  # a restart: nothing new, settings kept
    assert any(line.endswith("3 pairs, 0 new") for line in lines)
    assert db.settings(db.open_db(path))["votes_per_pair"] == "4"
    assert any("4 votes per pair, gold rate 0.25" in line for line in lines)


@pytest.mark.parametrize("kwargs, message", [({"votes_per_pair": 0}, "--votes-per-pair"),
                                             ({"gold_rate": 1.0}, "--gold-rate"), ({}, "no pairs")])
def test_prepare_refuses_settings_that_cannot_work(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        prepare(tmp_path / "l.sqlite", **kwargs)


def test_export_of_a_missing_database_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="bridle label serve"):
        run(["label", "export", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "o.jsonl")])
