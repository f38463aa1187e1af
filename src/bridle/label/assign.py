"""Which pair an annotator sees next, and recording their vote on it: the rules of the labelling app.

- A regular pair is handed out until k people hold it (`votes_per_pair`): a vote, or an unexpired assignment (a
  lease of `lease_seconds`, so twenty people opening the page at once do not all get the last open slot).
- A pair is assigned to a person at most once (the assignments table's key), so nobody sees or votes on it twice.
- Gold pairs (known answer) are mixed in: the next pair is gold when fewer than ⌊gold_rate · (n + 1)⌋ of the
  person's n votes so far were on gold pairs. They are served only while regular work is left for that person.
- Order: an annotator's own unanswered assignment first (a reload shows the same pair, same sides), then by
  `priority` (active selection; unset last), then pairs already under way (to finish them), then file order.
- The two responses are shown in an order drawn per assignment and recorded; a vote is stored both as clicked
  (left / right) and in the pair's own order (a / b), so a position bias can be measured and undone.
- A vote carries a client-made idempotency key: the same key again returns the first vote (a double click or a
  retried request records one vote); the vote is committed before the request is answered.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bridle.data.chat import Prompt
from bridle.errors import BridleError
from bridle.label.db import transaction

SHOWN_CHOICES = ("left", "right", "tie", "both_bad")


@dataclass(frozen=True)
class Rules:
    """How pairs are handed out; read from the database's settings."""

    votes_per_pair: int = 3
    gold_rate: float = 0.1
    lease_seconds: float = 900.0

    @classmethod
    def from_settings(cls, values: Mapping[str, str]) -> Rules:
        return cls(int(values.get("votes_per_pair", 3)), float(values.get("gold_rate", 0.1)),
                   float(values.get("lease_seconds", 900)))


@dataclass(frozen=True)
class Shown:
    """A pair as one annotator sees it: `left` is shown as "A", `right` as "B"."""

    pair_id: int
    prompt: Prompt
    left: Prompt
    right: Prompt
    swapped: bool
    gold: bool


@dataclass(frozen=True)
class VoteResult:
    vote_id: int
    duplicate: bool  # True: this idempotency key had been recorded before; nothing new was written
    choice: str      # in the pair's order: a, b, tie, both_bad


@dataclass(frozen=True)
class Progress:
    yours: int          # votes this annotator has given (gold included)
    open_for_you: int   # regular pairs still short of k votes that this annotator has not voted on
    pairs: int          # regular pairs
    complete: int       # regular pairs with k votes or more
    votes: int          # votes on regular pairs, counting at most k per pair
    needed: int         # k per regular pair

    @property
    def percent(self) -> float:
        return 100.0 * self.votes / self.needed if self.needed else 100.0


class VoteRejected(BridleError):
    """A vote that cannot be recorded; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def canonical(shown_choice: str, swapped: bool) -> str:
    """The clicked side in the pair's own order: left is response_a unless the sides were swapped."""
    if shown_choice == "left":
        return "b" if swapped else "a"
    if shown_choice == "right":
        return "a" if swapped else "b"
    return shown_choice


_TAKEN = """
WITH taken AS (
    SELECT p.id, p.priority, (SELECT COUNT(*) FROM assignments a WHERE a.pair_id = p.id AND (a.shown_at > :cutoff
        OR EXISTS (SELECT 1 FROM votes v WHERE v.annotator_id = a.annotator_id AND v.pair_id = p.id))) AS n
    FROM pairs p
    WHERE p.gold IS NULL AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.annotator_id = :u AND a.pair_id = p.id)
)
SELECT id FROM taken WHERE n < :k ORDER BY priority IS NULL, priority, n DESC, id LIMIT 1
"""


def next_pair(conn: sqlite3.Connection, annotator_id: int, rules: Rules, *, rng: random.Random | None = None,
              now: float | None = None) -> Shown | None:
    """The pair to show `annotator_id` now (assigning it, with sides drawn by `rng`), or None when they are done."""
    now = time.time() if now is None else now
    rng = rng or random.SystemRandom()
    with transaction(conn, durable=False):  # an assignment lost to a power cut is just handed out again
        own = conn.execute(
            "SELECT a.pair_id, a.swapped FROM assignments a JOIN pairs p ON p.id = a.pair_id "
            "WHERE a.annotator_id = ? AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.annotator_id = a.annotator_id "
            "AND v.pair_id = a.pair_id) AND (p.gold IS NOT NULL OR (SELECT COUNT(*) FROM votes v "
            "WHERE v.pair_id = p.id) < ?) ORDER BY a.shown_at, a.pair_id LIMIT 1",
            (annotator_id, rules.votes_per_pair)).fetchone()
        if own is not None:
            return load_shown(conn, own["pair_id"], bool(own["swapped"]))
        regular = conn.execute(_TAKEN, {"u": annotator_id, "k": rules.votes_per_pair,
                                        "cutoff": now - rules.lease_seconds}).fetchone()
        if regular is None:
            return None
        pair_id = regular["id"]
        if gold_due(conn, annotator_id, rules.gold_rate):
            gold = conn.execute("SELECT id FROM pairs p WHERE gold IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                                "assignments a WHERE a.annotator_id = ? AND a.pair_id = p.id) ORDER BY id LIMIT 1",
                                (annotator_id,)).fetchone()
            pair_id = gold["id"] if gold is not None else pair_id
        swapped = rng.random() < 0.5
        conn.execute("INSERT INTO assignments VALUES (?, ?, ?, ?)", (annotator_id, pair_id, int(swapped), now))
        return load_shown(conn, pair_id, swapped)


def gold_due(conn: sqlite3.Connection, annotator_id: int, gold_rate: float) -> bool:
    """Whether the annotator's next vote should be on a gold pair: gold votes < ⌊gold_rate · (votes + 1)⌋."""
    if gold_rate <= 0:
        return False
    votes, gold = conn.execute("SELECT COUNT(*), COALESCE(SUM(p.gold IS NOT NULL), 0) FROM votes v JOIN pairs p "
                               "ON p.id = v.pair_id WHERE v.annotator_id = ?", (annotator_id,)).fetchone()
    return gold < math.floor(gold_rate * (votes + 1) + 1e-9)


def load_shown(conn: sqlite3.Connection, pair_id: int, swapped: bool) -> Shown:
    row = conn.execute("SELECT prompt, response_a, response_b, gold FROM pairs WHERE id = ?", (pair_id,)).fetchone()
    a, b = json.loads(row["response_a"]), json.loads(row["response_b"])
    left, right = (b, a) if swapped else (a, b)
    return Shown(pair_id, json.loads(row["prompt"]), left, right, swapped, row["gold"] is not None)


def record_vote(conn: sqlite3.Connection, annotator_id: int, pair_id: int, shown_choice: str, key: str, *,
                comment: str = "", unsafe: bool = False, now: float | None = None) -> VoteResult:
    """Record one vote, committed before returning. The same `key` again returns the vote it first recorded."""
    if shown_choice not in SHOWN_CHOICES:
        raise VoteRejected(f"choice must be one of {', '.join(SHOWN_CHOICES)}, got {shown_choice!r}.", 422)
    with transaction(conn):
        first = conn.execute("SELECT id, annotator_id, pair_id, choice FROM votes WHERE idempotency_key = ?",
                             (key,)).fetchone()
        if first is not None:
            if (first["annotator_id"], first["pair_id"]) == (annotator_id, pair_id):
                return VoteResult(first["id"], True, first["choice"])
            raise VoteRejected("this idempotency key was already used for another vote; make a new key per vote.")
        assignment = conn.execute("SELECT swapped FROM assignments WHERE annotator_id = ? AND pair_id = ?",
                                  (annotator_id, pair_id)).fetchone()
        if assignment is None:
            raise VoteRejected(f"pair {pair_id} was not served to you; vote on the pair /api/next gives you.")
        if conn.execute("SELECT 1 FROM votes WHERE annotator_id = ? AND pair_id = ?",
                        (annotator_id, pair_id)).fetchone():
            raise VoteRejected(f"you have already voted on pair {pair_id}.")
        swapped = bool(assignment["swapped"])
        choice = canonical(shown_choice, swapped)
        cursor = conn.execute(
            "INSERT INTO votes (idempotency_key, annotator_id, pair_id, choice, shown_choice, swapped, comment, "
            "unsafe, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, annotator_id, pair_id, choice, shown_choice, int(swapped), comment, int(unsafe),
             time.time() if now is None else now))
        return VoteResult(int(cursor.lastrowid), False, choice)


def progress(conn: sqlite3.Connection, annotator_id: int, rules: Rules) -> Progress:
    k = rules.votes_per_pair
    row = conn.execute(
        "WITH counts AS (SELECT p.id, (SELECT COUNT(*) FROM votes v WHERE v.pair_id = p.id) AS n, "
        "EXISTS (SELECT 1 FROM votes v WHERE v.pair_id = p.id AND v.annotator_id = :u) AS mine "
        "FROM pairs p WHERE p.gold IS NULL) "
        "SELECT (SELECT COUNT(*) FROM votes WHERE annotator_id = :u) AS yours, "
        "COALESCE(SUM(n < :k AND NOT mine), 0) AS open_for_you, COUNT(*) AS pairs, "
        "COALESCE(SUM(n >= :k), 0) AS complete, COALESCE(SUM(MIN(n, :k)), 0) AS votes FROM counts",
        {"u": annotator_id, "k": k}).fetchone()
    return Progress(row["yours"], row["open_for_you"], row["pairs"], row["complete"], row["votes"],
                    row["pairs"] * k)
