"""Errors a user can fix. Each message names what to change; the CLI prints it without a traceback."""

from __future__ import annotations


class BridleError(Exception):
    """Base class: a problem in the user's input, config or environment, with a message that says how to fix it."""


class ConfigError(BridleError):
    """A config key or flag has a value that cannot work."""


class ModelError(BridleError):
    """A model or tokenizer cannot be found or loaded."""


class DataError(BridleError):
    """A data file or row is unusable. `source`, `row` (1-based) and `field` locate it."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None,
                 field: str | None = None, hint: str | None = None) -> None:
        self.source, self.row, self.field, self.hint = source, row, field, hint
        where = ", ".join(p for p in (source, f"row {row}" if row is not None else None) if p)
        text = f"{where}: {message}" if where else message
        if hint:
            text += "\n" + hint
        super().__init__(text)
