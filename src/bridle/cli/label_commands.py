"""`bridle label`: placeholder until the labelling app lands (parsing only; the work lives in bridle.label)."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    """Registers nothing yet."""
