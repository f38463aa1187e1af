"""Load on loopback: 20 annotators post 1,000 votes to a real `bridle label serve` (uvicorn in a subprocess); every
acknowledged vote is in the database exactly once. Then the same with the server SIGKILLed halfway and restarted on
the same database while the clients retry with the same idempotency keys.

Run with -s to see the figures (votes/s, p50 / p95 latency of vote requests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from bridle.label import db  # noqa: E402

ANNOTATORS, PAIRS, K = 20, 250, 4  # 250 pairs × 4 votes = 1,000 votes
RESEND_EVERY = 10  # every 10th vote is posted a second time, as a double click would
# `bridle label serve` through its own parser only: the full `bridle` parser imports torch for the training commands,
# which would make each (re)start take seconds for nothing the server uses.
RUNNER = ("import argparse, sys\nfrom bridle.cli import label_commands\n"
          "parser = argparse.ArgumentParser(prog='bridle')\n"
          "label_commands.add_parser(parser.add_subparsers(dest='command'))\n"
          "args = parser.parse_args(sys.argv[1:])\nargs.func(args)\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`bridle label serve --db DB --port PORT` in a subprocess, waited on until it answers."""

    def __init__(self, db_path: Path, port: int, token: str, log: Path, flags: list[str]) -> None:
        self.db_path, self.port, self.token, self.log, self.flags = db_path, port, token, log, flags
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-c", RUNNER, "label", "serve", "--db", str(self.db_path),
                                             "--port", str(self.port), *self.flags], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/progress", headers=bearer(self.token), timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer within 60 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Tally:
    acked: dict[str, int] = field(default_factory=dict)   # idempotency key → vote id, for every 200 answer
    resent: list[tuple[str, int, bool]] = field(default_factory=list)  # (key, vote id, duplicate) of double posts
    latencies: list[float] = field(default_factory=list)  # seconds per vote request that was answered
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def with_retry(call: Callable[[], httpx.Response], tally: Tally, deadline: float) -> tuple[httpx.Response, float]:
    """Send until the server answers (a dead or restarting server refuses or drops the connection), waiting 50 ms
    after the first failure and up to 0.5 s after later ones."""
    pause = 0.05
    while True:
        started = time.perf_counter()
        try:
            response = call()
            if response.status_code < 500:
                return response, time.perf_counter() - started
        except httpx.TransportError:
            pass
        with tally.lock:
            tally.retries += 1
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not come back")
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


def annotate(url: str, token: str, tally: Tally, deadline: float) -> None:
    """One annotator: ask for a pair, vote on it (same key on every retry), until no pair is left."""
    try:
        with httpx.Client(base_url=url, headers=bearer(token), timeout=10) as client:
            for n in range(1, 10_000):
                response, _ = with_retry(lambda: client.get("/api/next"), tally, deadline)
                pair = response.json()["pair"]
                if pair is None:
                    return
                body = {"pair_id": pair["pair_id"], "choice": ("left", "right", "tie", "both_bad")[n % 4],
                        "idempotency_key": uuid.uuid4().hex}
                response, seconds = with_retry(partial(client.post, "/api/vote", json=body), tally, deadline)
                if response.status_code != 200:
                    raise AssertionError(f"vote refused: {response.status_code} {response.text}")
                with tally.lock:
                    tally.acked[body["idempotency_key"]] = response.json()["vote_id"]
                    tally.latencies.append(seconds)
                if n % RESEND_EVERY == 0:
                    again, _ = with_retry(partial(client.post, "/api/vote", json=body), tally, deadline)
                    if again.status_code != 200:
                        raise AssertionError(f"resent vote refused: {again.status_code} {again.text}")
                    with tally.lock:
                        tally.resent.append((body["idempotency_key"], again.json()["vote_id"],
                                             again.json()["duplicate"]))
    except Exception as e:  # noqa: BLE001 - reported by the test
        with tally.lock:
            tally.errors.append(repr(e))


@pytest.fixture
def labelling(tmp_path: Path):
    """A database of PAIRS pairs (K votes each), ANNOTATORS tokens, and a server on a free port (killed at the end)."""
    path, data = tmp_path / "labels.sqlite", tmp_path / "candidates.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question {i}: which answer is kinder?",
                                        "response_a": f"Answer A to {i}.", "response_b": f"Answer B to {i}."}) + "\n"
                            for i in range(PAIRS)))
    db.init_db(path)
    conn = db.open_db(path)
    tokens = [db.add_annotator(conn, f"annotator{i:02d}") for i in range(ANNOTATORS)]
    conn.close()
    # A restart runs the same command: the candidates load again as 0 new pairs, the settings stay.
    flags = ["--data", str(data), "--votes-per-pair", str(K), "--gold-rate", "0"]
    server = Server(path, free_port(), tokens[0], tmp_path / "server.log", flags)
    server.start()
    yield path, tokens, server
    server.kill()


def run_annotators(server: Server, tokens: list[str], *, kill_at: int | None = None) -> tuple[Tally, float, float]:
    """All annotators at once; with `kill_at`, SIGKILL the server after that many acknowledged votes and restart it.
    Returns the tally, the wall time and the time the server was down."""
    tally = Tally()
    deadline = time.monotonic() + 120
    threads = [threading.Thread(target=annotate, args=(server.url, t, tally, deadline)) for t in tokens]
    started = time.perf_counter()
    for t in threads:
        t.start()
    down = 0.0
    if kill_at is not None:
        while len(tally.acked) < kill_at and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        killed = time.perf_counter()
        server.kill()
        server.start()
        down = time.perf_counter() - killed
    for t in threads:
        t.join()
    return tally, time.perf_counter() - started, down


def check_database(path: Path, tally: Tally) -> None:
    assert tally.errors == []
    conn = db.open_db(path)
    stored = dict(conn.execute("SELECT idempotency_key, id FROM votes").fetchall())
    assert len(stored) == len(tally.acked) == PAIRS * K              # zero lost, zero duplicated
    assert stored == tally.acked                                    # the same votes, under the ids acknowledged
    assert conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM votes GROUP BY annotator_id, pair_id "
                        "HAVING COUNT(*) > 1)").fetchone()[0] == 0  # nobody voted twice on a pair
    per_pair = {n for (n,) in conn.execute("SELECT COUNT(*) FROM votes GROUP BY pair_id")}
    assert per_pair == {K}                                          # every pair got exactly k votes
    assert tally.resent and all(dup and tally.acked[key] == vote_id for key, vote_id, dup in tally.resent)
    conn.close()


def report(name: str, tally: Tally, seconds: float, down: float = 0.0) -> str:
    latencies = sorted(tally.latencies)
    p50, p95 = latencies[len(latencies) // 2], latencies[int(0.95 * (len(latencies) - 1))]
    text = (f"{name}: {len(tally.acked)} votes by {ANNOTATORS} annotators in {seconds:.2f} s = "
            f"{len(tally.acked) / seconds:.0f} votes/s; vote latency p50 {1000 * p50:.1f} ms, p95 {1000 * p95:.1f} ms; "
            f"{len(tally.resent)} double posts deduplicated; {tally.retries} retries")
    if down:
        text += f"; server down {down:.2f} s (SIGKILL to answering again)"
    print("\n" + text)
    return text


def test_twenty_annotators_post_a_thousand_votes_none_lost_none_duplicated(labelling):
    path, tokens, server = labelling
    tally, seconds, _ = run_annotators(server, tokens)
    report("load", tally, seconds)
    check_database(path, tally)


def test_sigkill_halfway_and_restart_loses_no_acknowledged_vote(labelling):
    path, tokens, server = labelling
    tally, seconds, down = run_annotators(server, tokens, kill_at=PAIRS * K // 2)
    report("load with SIGKILL + restart", tally, seconds, down)
    assert down > 0 and tally.retries > 0  # the clients did see the server go away
    check_database(path, tally)
