"""Turn a config dataclass into argparse flags: every key is a flag, `--help` shows its default and meaning."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from bridle.config import field_type


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of keys; flags given here override it")
    for f in dataclasses.fields(config_cls):
        tp = field_type(config_cls, f)
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {f.default!r})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, type=tp, choices=choices, metavar=tp.__name__.upper() if not choices else None,
                                **kwargs)


def overrides_from(namespace: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(namespace).items() if k not in ("command", "config", "func")}
