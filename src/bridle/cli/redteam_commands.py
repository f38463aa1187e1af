"""`bridle redteam`: placeholder until the command lands (parsing only; the work lives in bridle.feedback)."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    """Registers nothing yet."""
