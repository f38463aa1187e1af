"""`bridle make-arithmetic`: write the project's own verifiable-reward demo data (parsing only)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("make-arithmetic", help="write arithmetic problems with exact answers (GRPO / RLOO demo data)",
                       description="Rows {prompt: 'What is a op b?', answer: '... #### result'}, graded by the "
                                   "math_exact_match reward.")
    p.add_argument("--output", required=True, help="output jsonl")
    p.add_argument("--n", type=int, default=500, help="number of problems (default: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--low", type=int, default=1, help="smallest operand (default: 1)")
    p.add_argument("--high", type=int, default=20, help="largest operand (default: 20)")
    p.add_argument("--ops", default="+", help="operations to draw from, some of + - * (default: +)")
    p.set_defaults(func=make_arithmetic_command)


def make_arithmetic_command(args: argparse.Namespace) -> None:
    from bridle.data.arithmetic import write_arithmetic
    from bridle.errors import ConfigError

    try:
        path = write_arithmetic(args.output, args.n, seed=args.seed, low=args.low, high=args.high, ops=args.ops)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(f"wrote {args.n} problems to {path}")
