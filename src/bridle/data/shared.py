"""Where the project's shared real data lives, for commands with a built-in data set (judge-check, redteam)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_file(relative: str) -> Path | None:
    """A file of the shared data folder ($BRIDLE_SHARED_DATA, else ../shared/data beside the working directory or
    beside this checkout), or None when it is in none of them."""
    roots = [os.environ.get("BRIDLE_SHARED_DATA"), Path.cwd() / ".." / "shared" / "data",
             Path(__file__).resolve().parents[3] / ".." / "shared" / "data"]
    for root in roots:
        if root and (Path(root) / relative).is_file():
            return (Path(root) / relative).resolve()
    return None
