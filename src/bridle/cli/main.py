"""Entry point of the `bridle` command: one subcommand per training method, plus tool commands."""

from __future__ import annotations

import argparse
import importlib
import sys

from bridle import __version__
from bridle.errors import BridleError

# Tool commands (not training methods): modules with `add_parser(subparsers)` that set `func` on their parser.
TOOL_COMMANDS: list[str] = []
TOOL_COMMANDS.append("bridle.cli.rm_commands")  # score, best-of-n, eval-rm
TOOL_COMMANDS.append("bridle.cli.data_commands")  # make-arithmetic


def build_parser() -> argparse.ArgumentParser:
    from bridle.cli.options import add_config_flags
    from bridle.methods import METHODS

    parser = argparse.ArgumentParser(prog="bridle", description="Align language models with preferences.")
    parser.add_argument("--version", action="version", version=f"bridle {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cls in METHODS.items():
        p = sub.add_parser(name, help=cls.summary, description=f"bridle {name}: {cls.summary}")
        add_config_flags(p, cls.Config)
        p.set_defaults(func=train_command)
    for module in TOOL_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def train_command(args: argparse.Namespace) -> None:
    from bridle.cli.options import overrides_from
    from bridle.config import build_config
    from bridle.methods import METHODS
    from bridle.methods.runner import run

    cls = METHODS[args.command]
    config = build_config(cls.Config, args.config, overrides_from(args))
    if not config.data:
        raise BridleError(f"bridle {args.command}: no training data; pass --data FILE (or set data: in --config).")
    run(cls, config)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 1
    try:
        args.func(args)
    except BridleError as err:
        print(f"bridle: {err}".replace("\n", "\n        "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bridle: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
