"""Turn a config dataclass into argparse flags: every key is a flag, `--help` shows its default and meaning.

Each key is also accepted with underscores (`--max_length`, `--no_packing`), and the familiar names of
`bridle.config.ALIASES` whose key the config has are flags too (`--learning_rate`); both are hidden from `--help`.
An alias flag keeps the familiar name as its dest, so `build_config` reads it exactly as it reads a YAML key."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from bridle.config import ALIASES, field_type

HIDDEN: dict[str, Any] = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of keys; flags given here override it")
    for f in dataclasses.fields(config_cls):
        tp = field_type(config_cls, f)
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if f.name == "resume":  # --resume [yes|no|auto]: bare means yes, as the switch it was; --no-resume means no
            parser.add_argument(flag, nargs="?", const="yes", choices=f.metadata.get("choices"), **kwargs)
            parser.add_argument("--no-resume", dest=f.name, action="store_const", const="no", **HIDDEN)
        elif tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            if "_" in f.name:  # --gradient_checkpointing [true|false], as Hugging Face's parser takes it
                parser.add_argument("--" + f.name, dest=f.name, nargs="?", const=True, **HIDDEN)
            parser.add_argument("--no_" + f.name, dest=f.name, action="store_false", **HIDDEN)
        else:
            choices = f.metadata.get("choices")
            metavar = tp.__name__.upper() if not choices else None
            parser.add_argument(flag, type=tp, choices=choices, metavar=metavar, **kwargs)
            if "_" in f.name:
                parser.add_argument("--" + f.name, dest=f.name, type=tp, choices=choices, metavar=metavar, **HIDDEN)
    add_alias_flags(parser, config_cls)


def add_alias_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Hidden flags for the familiar names whose key `config_cls` has. Their values reach `build_config` raw
    (a switch given bare is True), so a flag is read exactly as the same name in a YAML file."""
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    for name, alias in ALIASES.items():
        if alias.key not in by_name or name in by_name:
            continue
        tp = field_type(config_cls, by_name[alias.key])
        if alias.switch or tp is bool:
            parser.add_argument("--" + name, dest=name, nargs="?", const=True, **HIDDEN)
        else:
            parser.add_argument("--" + name, dest=name, type=str if alias.convert else tp, **HIDDEN)


def overrides_from(namespace: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(namespace).items() if k not in ("command", "config", "func", "argv")}
