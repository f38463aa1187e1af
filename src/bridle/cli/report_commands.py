"""`bridle report`: parsing only; the work is in `bridle.report`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    rp = sub.add_parser("report", help="write one self-contained HTML report of a recipe, training run or eval",
                        description="Write RUN_DIR's report as one HTML file that opens without a network: per "
                                    "stage the curves of loss, reward, KL, accuracy and length, the evaluation "
                                    "tables (win rates with 95% intervals, rewards, KL, lengths, checks), answers "
                                    "side by side, the lineage, and which figures are too weak to lean on. RUN_DIR "
                                    "is a recipe's run dir, a training run's --output-dir or a `bridle eval` "
                                    "--output-dir.")
    rp.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the directory to report on")
    rp.add_argument("--output", type=Path, help="where to write the HTML (default: RUN_DIR/report.html)")
    rp.add_argument("--samples", type=int, default=8, metavar="N",
                    help="prompts shown with every model's answer, per evaluation (default: 8)")
    rp.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> None:
    from bridle.engine.logging import console
    from bridle.errors import ConfigError
    from bridle.report import write_report

    if args.samples < 0:
        raise ConfigError(f"--samples must be 0 or more, got {args.samples}.")
    path = write_report(args.run_dir, args.output, samples=args.samples)
    console.print(f"wrote {path}", markup=False, soft_wrap=True)
