"""Thin wiring per method: config + data + objective. Importing this package registers every method."""

from bridle.methods import sft  # noqa: F401  (registers "sft")
from bridle.methods import dpo, kto, rrhf  # noqa: F401  (registers "dpo", "simpo", "orpo", "kto", "rrhf")
from bridle.methods import rm  # noqa: F401  (registers "rm")
from bridle.methods.base import METHODS, Method, method

__all__ = ["METHODS", "Method", "method"]
