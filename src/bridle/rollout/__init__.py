"""Batched sampling from a policy with per-token sampling log-probs: Bridle's decode loop (each prompt prefilled once
for its samples, finished rows dropped), HF generate as the fallback."""

from bridle.rollout.rollout import Rollout, SamplingSettings, sample
from bridle.rollout.sampling import as_messages, generate, render_prompt

__all__ = ["Rollout", "SamplingSettings", "as_messages", "generate", "render_prompt", "sample"]
