"""Thin wiring per method: config + data + objective. Importing this package registers every method."""

# Importing a method module registers its commands: sft; rm; dpo, simpo, orpo; kto; rrhf; ppo; grpo, rloo; raft.
from bridle.methods import dpo, grpo, kto, ppo, raft, rm, rrhf, sft  # noqa: F401
from bridle.methods.base import METHODS, Method, method

__all__ = ["METHODS", "Method", "method"]
