"""`bridle label serve` and friends: load candidates into the database, then run the app on uvicorn."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

from bridle.errors import ConfigError
from bridle.label import db as store
from bridle.label.candidates import read_candidates, read_gold


def prepare(db_path: str | Path, *, data: Sequence[str] = (), gold: Sequence[str] = (),
            votes_per_pair: int | None = None, gold_rate: float | None = None, lease_seconds: float | None = None,
            pairs_per_prompt: int = 0, seed: int = 0, reward_model: str | None = None) -> list[str]:
    """Create or open the database, add the pairs of `data` and `gold` (pairs already there are kept once), store
    the settings given, and with `reward_model` set each pair's active-selection priority. Returns report lines."""
    if votes_per_pair is not None and votes_per_pair < 1:
        raise ConfigError(f"--votes-per-pair must be 1 or more, got {votes_per_pair}.")
    if gold_rate is not None and not 0.0 <= gold_rate < 1.0:
        raise ConfigError(f"--gold-rate must be in [0, 1), got {gold_rate}.")
    if lease_seconds is not None and lease_seconds <= 0:
        raise ConfigError(f"--lease-seconds must be positive, got {lease_seconds}.")
    store.init_db(db_path)
    conn = store.open_db(db_path)
    lines = []
    try:
        for path in data:
            pairs = read_candidates(path, pairs_per_prompt=pairs_per_prompt, seed=seed)
            lines.append(f"{path}: {len(pairs)} pairs, {store.add_pairs(conn, pairs)} new")
        for path in gold:
            pairs = read_gold(path)
            lines.append(f"{path}: {len(pairs)} gold pairs, {store.add_pairs(conn, pairs)} new")
        given = {"votes_per_pair": votes_per_pair, "gold_rate": gold_rate, "lease_seconds": lease_seconds}
        store.set_settings(conn, {k: v for k, v in given.items() if v is not None})
        if reward_model:
            from bridle.label.active import prioritize, reward_model_scorer

            lines.append(f"active selection: {prioritize(conn, reward_model_scorer(reward_model))} pairs ranked by "
                         f"{reward_model}'s uncertainty")
        total, gold_total = conn.execute("SELECT COALESCE(SUM(gold IS NULL), 0), COALESCE(SUM(gold IS NOT NULL), 0) "
                                         "FROM pairs").fetchone()
        if total == 0:
            raise ConfigError(f"--db {db_path} holds no pairs to label; pass --data FILE (candidates).")
        settings = store.settings(conn)
        lines.append(f"{db_path}: {total} pairs + {gold_total} gold, {settings['votes_per_pair']} votes per pair, "
                     f"gold rate {settings['gold_rate']}")
        if conn.execute("SELECT COUNT(*) FROM annotators").fetchone()[0] == 0:
            lines.append(f"no annotators yet: `bridle label add-annotator NAME --db {db_path}` makes one "
                         "(add --admin for the admin page)")
    finally:
        conn.close()
    return lines


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(db_path: str | Path, *, host: str = "127.0.0.1", port: int = 8765, max_body_bytes: int = 64 * 1024,
          **prepare_args: object) -> None:
    """Prepare the database and serve the app until interrupted."""
    try:
        import uvicorn

        from bridle.label.app import create_app
    except ImportError as e:
        raise ConfigError(f"`bridle label serve` needs the web stack ({e.name} is missing): "
                          "pip install 'bridle-lm[label]'.") from e
    for line in prepare(db_path, **prepare_args):  # type: ignore[arg-type]
        print(f"bridle label: {line}", file=sys.stderr)
    if not is_loopback(host):
        print(f"bridle label: WARNING: serving on {host}, reachable from other machines; traffic is plain HTTP "
              "(put it behind TLS).", file=sys.stderr)
    app = create_app(db_path, max_body_bytes=max_body_bytes)
    shown = f"[{host}]" if ":" in host else host
    print(f"bridle label: serving on http://{shown}:{port}/ (Ctrl+C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False)
