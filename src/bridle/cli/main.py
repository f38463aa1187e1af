"""Entry point of the `bridle` command: one subcommand per training method, plus tool commands."""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from typing import Any

from bridle import __version__
from bridle.errors import BridleError, ConfigError

# Tool commands (not training methods): modules with `add_parser(subparsers)` that set `func` on their parser.
TOOL_COMMANDS: list[str] = []
TOOL_COMMANDS.append("bridle.cli.rm_commands")  # score, best-of-n, eval-rm
TOOL_COMMANDS.append("bridle.cli.data_commands")  # make-arithmetic
TOOL_COMMANDS.append("bridle.cli.preview")  # preview
TOOL_COMMANDS.append("bridle.cli.judge_commands")  # judge-check
TOOL_COMMANDS.append("bridle.cli.eval_commands")  # eval
TOOL_COMMANDS.append("bridle.cli.rlaif_commands")  # rlaif
TOOL_COMMANDS.append("bridle.cli.constitute_commands")  # constitute
TOOL_COMMANDS.append("bridle.cli.redteam_commands")  # redteam
TOOL_COMMANDS.append("bridle.cli.curate_commands")  # curate
TOOL_COMMANDS.append("bridle.cli.recipe_commands")  # run (recipes)
TOOL_COMMANDS.append("bridle.cli.report_commands")  # report
TOOL_COMMANDS.append("bridle.cli.quickstart_commands")  # quickstart
TOOL_COMMANDS.append("bridle.cli.label_commands")  # label serve / add-annotator / export


def build_parser() -> argparse.ArgumentParser:
    from bridle.cli.options import add_config_flags
    from bridle.methods import METHODS

    parser = argparse.ArgumentParser(prog="bridle", description="Align language models with preferences.")
    parser.add_argument("--version", action="version", version=f"bridle {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cls in METHODS.items():
        # No abbreviations: with underscore forms and familiar names beside every flag, a prefix is rarely unique,
        # and a mistyped flag gets a "did you mean" instead.
        p = sub.add_parser(name, help=cls.summary, description=f"bridle {name}: {cls.summary}", allow_abbrev=False)
        add_config_flags(p, cls.Config)
        p.set_defaults(func=train_command)
    for module in TOOL_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse's parse, except that an unknown flag is a BridleError that says what was meant."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        raise unknown_argument(parser, args.command, extras)
    return args


def unknown_argument(parser: argparse.ArgumentParser, command: str | None, extras: list[str]) -> BridleError:
    from bridle.config import ALIASES, alias_problem, closest_name, fields_of
    from bridle.methods import METHODS

    token = next((t for t in extras if t.startswith("-")), None)
    if token is None:
        return BridleError(f"unexpected argument {extras[0]!r} (flags start with --).")
    flag = token.split("=", 1)[0]
    name = flag.lstrip("-").replace("-", "_")
    help_hint = f"`bridle {command} --help` lists every flag." if command else "`bridle --help` lists the commands."
    cls = METHODS.get(command or "")
    if cls is not None:
        owner = f"`bridle {command}`"
        problem = alias_problem(cls.Config, name, as_flag=True, owner=owner)
        key = ALIASES[name].key if problem else name
        elsewhere = [m for m, c in METHODS.items() if key in {f.name for f in fields_of(c.Config)}]
        if problem:
            return ConfigError(problem + (f" It is a key of {', '.join(elsewhere)}." if elsewhere else ""))
        if elsewhere:
            return ConfigError(f"{owner} has no flag {flag}; it is a key of {', '.join(elsewhere)}.")
        close = closest_name(cls.Config, name, as_flag=True)
    else:
        close = closest_flag(command_parser(parser, command), flag)
    return BridleError(f"unknown flag {flag}." + (f" Did you mean {close}?" if close else f" {help_hint}"))


def command_parser(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def closest_flag(parser: argparse.ArgumentParser, flag: str) -> str | None:
    flags = [s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings if s.startswith("--")]
    close = difflib.get_close_matches(flag, flags, n=1)
    return close[0] if close else None


def config_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """(method class, its config) from parsed arguments: defaults < --config YAML < flags."""
    from bridle.cli.options import overrides_from
    from bridle.config import build_config
    from bridle.methods import METHODS

    if args.command not in METHODS:
        raise BridleError(f"{args.command!r} is not a training method.")
    cls = METHODS[args.command]
    config = build_config(cls.Config, args.config, overrides_from(args), note=print_note,
                          owner=f"`bridle {args.command}`")
    return cls, config


def config_from_argv(argv: list[str]) -> tuple[Any, Any]:
    """What `bridle <method> ...` would train, without training: (method class, its config)."""
    return config_from_args(parse_args(build_parser(), argv))


def print_note(text: str) -> None:
    print(f"bridle: {text}", file=sys.stderr)


def train_command(args: argparse.Namespace) -> int:
    from bridle.cli.launch import launch, needs_launch
    from bridle.methods.runner import run

    cls, config = config_from_args(args)
    if not config.data:
        raise BridleError(f"bridle {args.command}: no training data; pass --data FILE (or set data: in --config).")
    if needs_launch(config):  # --num-processes N / --accelerate-config: the same command, in N processes
        return launch(config, args.argv)
    run(cls, config)
    return 0


def quiet_unless_main() -> None:
    """In a launch of several processes only the main one (rank 0) shows progress and notes; errors still show."""
    from bridle.engine.distributed import process_rank
    from bridle.engine.logging import console

    if process_rank() != 0:
        console.quiet = True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(parser, argv)
        if not args.command:
            parser.print_help()
            return 1
        args.argv = argv  # what a launch of several processes runs again in each
        quiet_unless_main()
        status = args.func(args)
        if isinstance(status, int) and status:
            return status
    except BridleError as err:
        print(f"bridle: {err}".replace("\n", "\n        "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bridle: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
