"""Batched sampling from a policy (HF generate, left padding, KV cache)."""

from bridle.rollout.sampling import as_messages, generate, render_prompt

__all__ = ["as_messages", "generate", "render_prompt"]
