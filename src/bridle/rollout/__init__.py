"""Batched sampling from a policy (HF generate, left padding, KV cache) with per-token sampling log-probs."""

from bridle.rollout.rollout import Rollout, SamplingSettings, sample
from bridle.rollout.sampling import as_messages, generate, render_prompt

__all__ = ["Rollout", "SamplingSettings", "as_messages", "generate", "render_prompt", "sample"]
