"""The labelling database: one SQLite file in WAL mode holding pairs, annotators, sessions, assignments and votes.

Durability is SQLite's: every write is one `BEGIN IMMEDIATE … COMMIT` transaction; a vote's is committed with
`synchronous=FULL` (the WAL is fsynced) before its request is answered, so a server killed with SIGKILL, or a power
cut, loses no acknowledged vote. WAL lets readers (progress, admin pages) run beside the one writer.

Tokens and session ids are stored only as SHA-256 hashes: they are 256-bit random strings, so a plain hash is enough
(a slow password hash guards guessable secrets).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bridle.errors import ConfigError, DataError
from bridle.label.candidates import Pair, pair_key

SCHEMA_VERSION = "1"
SESSION_SECONDS = 12 * 3600
DEFAULTS = {"votes_per_pair": "3", "gold_rate": "0.1", "lease_seconds": "900"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY,
    pair_key TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,                -- JSON: text or chat messages
    response_a TEXT NOT NULL,            -- JSON
    response_b TEXT NOT NULL,            -- JSON
    model_a TEXT, model_b TEXT, prompt_index INTEGER,
    source TEXT NOT NULL, source_row INTEGER NOT NULL,
    gold TEXT CHECK (gold IN ('a', 'b', 'tie', 'both_bad')),
    priority REAL                        -- active selection: smaller is served first (NULL last)
);
CREATE TABLE IF NOT EXISTS annotators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    annotator_id INTEGER NOT NULL REFERENCES annotators(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created REAL NOT NULL
);
-- A pair shown to an annotator, in the order drawn for them; at most once per person (the primary key).
CREATE TABLE IF NOT EXISTS assignments (
    annotator_id INTEGER NOT NULL REFERENCES annotators(id) ON DELETE CASCADE,
    pair_id INTEGER NOT NULL REFERENCES pairs(id),
    swapped INTEGER NOT NULL,            -- 1: response_b was shown on the left (as "A")
    shown_at REAL NOT NULL,
    PRIMARY KEY (annotator_id, pair_id)
);
CREATE INDEX IF NOT EXISTS assignments_pair ON assignments(pair_id);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,  -- the client's: a retried or double-clicked submit records one vote
    annotator_id INTEGER NOT NULL REFERENCES annotators(id),
    pair_id INTEGER NOT NULL REFERENCES pairs(id),
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),          -- in the pair's order
    shown_choice TEXT NOT NULL CHECK (shown_choice IN ('left', 'right', 'tie', 'both_bad')),  -- as clicked
    swapped INTEGER NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    unsafe INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    UNIQUE (annotator_id, pair_id)
);
CREATE INDEX IF NOT EXISTS votes_pair ON votes(pair_id);
"""


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    admin: bool


@dataclass(frozen=True)
class Session:
    annotator: Annotator
    csrf: str


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (writes go through `transaction`), rows as `sqlite3.Row`."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at its start (IMMEDIATE) so concurrent writers queue instead of deadlocking.

    `durable` (votes, annotators, settings): COMMIT returns once the WAL is fsynced, so even a power cut keeps it.
    Otherwise (assignments, sessions: cheap to lose) the commit is written to the OS but not fsynced, which survives
    a killed process and costs no disk flush; the next durable commit flushes it too."""
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def init_db(path: str | Path) -> None:
    """Create (or open) the database: WAL mode, the schema, default settings."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise ConfigError(f"--db {path}: the folder {path.parent} does not exist.")
    conn = connect(path)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ConfigError(f"--db {path}: SQLite could not switch to WAL mode (got {mode!r}); use a local disk.")
        conn.executescript(SCHEMA)  # every statement is IF NOT EXISTS: safe to run on each start
        with transaction(conn):
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is not None and version[0] != SCHEMA_VERSION:
                raise ConfigError(f"--db {path} was written by another version of bridle label (schema "
                                  f"{version[0]}, this one reads {SCHEMA_VERSION}).")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", DEFAULTS.items())
    finally:
        conn.close()


def open_db(path: str | Path) -> sqlite3.Connection:
    """A connection to an existing labelling database."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--db {path} does not exist; `bridle label serve --data FILE --db {path}` creates it.")
    conn = connect(path)
    if conn.execute("SELECT name FROM sqlite_master WHERE name = 'votes'").fetchone() is None:
        conn.close()
        raise ConfigError(f"--db {path} is not a bridle label database (it has no votes table).")
    return conn


def settings(conn: sqlite3.Connection) -> dict[str, str]:
    return {row["key"]: row["value"] for row in conn.execute("SELECT key, value FROM meta")}


def set_settings(conn: sqlite3.Connection, values: dict[str, object]) -> None:
    with transaction(conn):
        conn.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         [(k, str(v)) for k, v in values.items()])


# ---- pairs ---------------------------------------------------------------------------------------------------


def add_pairs(conn: sqlite3.Connection, pairs: Iterable[Pair]) -> int:
    """Insert pairs not already there (same prompt and responses, either order); returns how many were new."""
    rows = [(pair_key(p), _json(p.prompt), _json(p.response_a), _json(p.response_b), p.model_a, p.model_b,
             p.prompt_index, p.source, p.source_row, p.gold) for p in pairs]
    with transaction(conn):
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO pairs (pair_key, prompt, response_a, response_b, model_a, model_b, "
                         "prompt_index, source, source_row, gold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return conn.total_changes - before


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


# ---- annotators and sessions ---------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_annotator(conn: sqlite3.Connection, name: str, *, admin: bool = False, new_token: bool = False) -> str:
    """Create annotator `name` (or, with `new_token`, replace their token) and return the token, shown once."""
    name = name.strip()
    if not name or len(name) > 64 or any(not (c.isalnum() or c in "-_.@ ") for c in name):
        raise DataError(f"annotator name {name!r} must be 1 to 64 letters, digits, spaces or - _ . @.",
                        field="name")
    token = secrets.token_urlsafe(32)
    with transaction(conn):
        exists = conn.execute("SELECT id FROM annotators WHERE name = ?", (name,)).fetchone()
        if exists and not new_token:
            raise DataError(f"annotator {name!r} already exists; pass --new-token to replace their token.",
                            field="name")
        if exists:
            conn.execute("UPDATE annotators SET token_hash = ?, admin = ? WHERE id = ?",
                         (hash_token(token), int(admin), exists["id"]))
            conn.execute("DELETE FROM sessions WHERE annotator_id = ?", (exists["id"],))
        else:
            conn.execute("INSERT INTO annotators (name, token_hash, admin, created) VALUES (?, ?, ?, ?)",
                         (name, hash_token(token), int(admin), time.time()))
    return token


def annotator_by_token(conn: sqlite3.Connection, token: str) -> Annotator | None:
    row = conn.execute("SELECT id, name, admin FROM annotators WHERE token_hash = ?",
                       (hash_token(token),)).fetchone()
    return Annotator(row["id"], row["name"], bool(row["admin"])) if row else None


def create_session(conn: sqlite3.Connection, annotator: Annotator) -> tuple[str, str]:
    """(session id for the cookie, CSRF token for the session's forms)."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with transaction(conn, durable=False):
        conn.execute("DELETE FROM sessions WHERE created < ?", (time.time() - SESSION_SECONDS,))
        conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (hash_token(session_id), annotator.id, csrf,
                                                                  time.time()))
    return session_id, csrf


def session_by_id(conn: sqlite3.Connection, session_id: str) -> Session | None:
    row = conn.execute("SELECT a.id, a.name, a.admin, s.csrf, s.created FROM sessions s JOIN annotators a "
                       "ON a.id = s.annotator_id WHERE s.id_hash = ?", (hash_token(session_id),)).fetchone()
    if row is None or row["created"] < time.time() - SESSION_SECONDS:
        return None
    return Session(Annotator(row["id"], row["name"], bool(row["admin"])), row["csrf"])


def end_session(conn: sqlite3.Connection, session_id: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM sessions WHERE id_hash = ?", (hash_token(session_id),))
