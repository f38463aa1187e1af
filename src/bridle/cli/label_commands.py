"""`bridle label serve | add-annotator | export`: parsing only; the work is in `bridle.label`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    label = sub.add_parser("label", help="human preference labelling: a local web app, annotators, export",
                           description="Collect human preferences: annotators choose the better of two responses in "
                                       "a local web app; export the votes as preference rows for `bridle rm` / "
                                       "`bridle dpo`, or as verdicts for human win rates.")
    actions = label.add_subparsers(dest="label_command", metavar="ACTION", required=True)

    serve = actions.add_parser("serve", help="load candidates into --db and serve the labelling app",
                               description="Load candidate pairs into the database (pairs already there are kept "
                                           "once) and serve the app. Settings given here are stored in --db and kept "
                                           "for later runs.")
    serve.add_argument("--db", required=True, help="the labelling database (SQLite; created if missing)")
    serve.add_argument("--data", action="append", default=[], metavar="FILE",
                       help="candidates: best-of-n / rlaif / eval output, or prompt + responses rows (repeat)")
    serve.add_argument("--gold", action="append", default=[], metavar="FILE",
                       help="gold pairs with a known answer, mixed in to measure annotators (repeat)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default: 127.0.0.1; anything else is reachable from other machines)")
    serve.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    serve.add_argument("--votes-per-pair", type=int, metavar="K",
                       help="votes each pair collects, from different people (default: 3, or what --db holds)")
    serve.add_argument("--gold-rate", type=float,
                       help="share of each annotator's votes spent on gold pairs (default: 0.1, or what --db holds)")
    serve.add_argument("--lease-seconds", type=float,
                       help="how long a shown pair holds one of its k places before others may take it "
                            "(default: 900, or what --db holds)")
    serve.add_argument("--pairs-per-prompt", type=int, default=0,
                       help="at most this many pairs per prompt from many-response rows, drawn with --seed "
                            "(default: 0 = all)")
    serve.add_argument("--seed", type=int, default=0, help="seed for --pairs-per-prompt (default: 0)")
    serve.add_argument("--reward-model", metavar="DIR",
                       help="active selection: serve first the pairs this reward model is least sure about")
    serve.add_argument("--max-body-bytes", type=int, default=64 * 1024,
                       help="largest request body accepted; larger ones get 413 (default: 65536)")
    serve.set_defaults(func=serve_command)

    add = actions.add_parser("add-annotator", help="create an annotator and print their login token (shown once)",
                             description="Create an annotator and print their token on stdout; only its hash is "
                                         "stored, so keep it: a lost token is replaced with --new-token.")
    add.add_argument("name", help="the annotator's name (letters, digits, spaces, - _ . @)")
    add.add_argument("--db", required=True, help="the labelling database (created if missing)")
    add.add_argument("--admin", action="store_true", help="may see the admin page (progress, accuracy, agreement)")
    add.add_argument("--new-token", action="store_true",
                     help="replace an existing annotator's token (their sessions end; give --admin again for an admin)")
    add.set_defaults(func=add_annotator_command)

    export = actions.add_parser("export", help="write the votes as preference rows (or verdicts) by majority",
                                description="Preference rows {prompt, chosen, rejected, votes, agreement, ...} that "
                                            "`bridle rm` and `bridle dpo` read as they are, or --format verdicts for "
                                            "human win rates. A pair's label is the choice with more votes than any "
                                            "other; ties, both-bad and split votes give no preference row.")
    export.add_argument("--db", required=True, help="the labelling database")
    export.add_argument("--out", required=True, help="the jsonl file to write (replaced whole)")
    export.add_argument("--format", choices=("preferences", "verdicts"), default="preferences",
                        help="preferences (default) or verdicts (winner A / B / tie per pair, as bridle eval writes)")
    export.add_argument("--min-votes", type=int,
                        help="pairs with fewer votes are left out (default: the database's votes per pair)")
    export.add_argument("--exclude-unsafe", action="store_true",
                        help="leave out pairs any annotator flagged unsafe")
    export.set_defaults(func=export_command)


def serve_command(args: argparse.Namespace) -> None:
    from bridle.label.server import serve

    serve(args.db, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes, data=args.data,
          gold=args.gold, votes_per_pair=args.votes_per_pair, gold_rate=args.gold_rate,
          lease_seconds=args.lease_seconds, pairs_per_prompt=args.pairs_per_prompt, seed=args.seed,
          reward_model=args.reward_model)


def add_annotator_command(args: argparse.Namespace) -> None:
    from bridle.label import db

    db.init_db(args.db)
    conn = db.open_db(args.db)
    try:
        token = db.add_annotator(conn, args.name, admin=args.admin, new_token=args.new_token)
    finally:
        conn.close()
    role = "admin" if args.admin else "annotator"
    print(f"bridle label: {role} {args.name!r} added; their token (shown once, stored hashed):", file=sys.stderr)
    print(token)


def export_command(args: argparse.Namespace) -> None:
    from bridle.label import db
    from bridle.label.export import export

    conn = db.open_db(args.db)
    try:
        summary = export(conn, args.out, fmt=args.format, min_votes=args.min_votes,
                         exclude_unsafe=args.exclude_unsafe)
    finally:
        conn.close()
    print(summary.text(args.out, args.format))
