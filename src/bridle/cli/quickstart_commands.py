"""`bridle quickstart`: parsing only; the work is in `bridle.quickstart`."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("quickstart", help="see alignment work in minutes: SFT → RM → PPO and SFT → DPO on the "
                                          "embedded model, evaluated before vs after, with report.html",
                       description="Write a small dataset with a checkable preference (answer in one short "
                                   "sentence), run SFT → reward model → PPO and SFT → DPO on it, evaluate the base, "
                                   "SFT, PPO and DPO models against each other on held-out questions, and write "
                                   "report.html. About 7 minutes on 2 idle CPU cores; rerunning skips what is done.",
                       allow_abbrev=False)
    p.add_argument("--output-dir", default="runs/quickstart", help="where everything goes (default: runs/quickstart)")
    p.add_argument("--model", default="smollm2-135m", help="the model to align (default: the embedded SmolLM2-135M)")
    p.add_argument("--profile", default="cpu", choices=("cpu", "tiny"),
                   help="stage sizes: cpu (default, ~7 min on 2 idle cores) or tiny (seconds, for a tiny test model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, training and sampling (default: 0)")
    p.set_defaults(func=quickstart_command)


def quickstart_command(args: argparse.Namespace) -> None:
    from bridle.engine.logging import console
    from bridle.quickstart import run_quickstart

    report = run_quickstart(args.output_dir, model=args.model, profile=args.profile, seed=args.seed)
    console.print(f"open {report} in a browser to see whether alignment worked")
