"""GRPO and RLOO: G responses per prompt, the group as the baseline, no critic.

GRPO (Shao et al. 2024) normalizes each reward within its group and puts the KL to the reference in the loss.
RLOO (Ahmadian et al. 2024) subtracts the mean reward of the other G−1 responses and, as in the paper, folds the
KL into the reward: r = score − β·Σ_t KL_t; its loss weights the whole sequence's log-prob (REINFORCE).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bridle import objectives
from bridle.config import option
from bridle.engine import StepOutput
from bridle.errors import ConfigError
from bridle.methods.base import method
from bridle.methods.experience import Experience, response_logps
from bridle.methods.online import OnlineConfig, OnlineMethod
from bridle.methods.sharing import (
    PrefixSharingMixin,
    causal_lm_sharing_problem,
    decoder_body,
    prefix_sharing_option,
)
from bridle.ops import group_normalize, kl_penalty, leave_one_out


@dataclass
class GRPOConfig(OnlineConfig):
    num_samples: int = option(8, "responses sampled per prompt (the group size G)")
    prompts_per_rollout: int = option(4, "prompts sampled per round")
    batch_size: int = option(8, "responses per micro-batch")
    grad_accum: int = option(4, "micro-batches per optimizer step")
    scale_rewards: bool = option(True, "divide by the group's reward std (False = Dr. GRPO: only subtract the mean)")
    clip_eps_high: float = option(0.0, "upper ratio clip ε_high (DAPO clip-higher); 0 = same as --clip-eps")
    loss_aggregation: str = option("sequence", "mean per response then over responses (GRPO paper), or over all "
                                               "tokens (DAPO)", ("sequence", "token"))
    prefix_sharing: bool = prefix_sharing_option(False)


@dataclass
class RLOOConfig(OnlineConfig):
    num_samples: int = option(4, "responses sampled per prompt (k ≥ 2; each one's baseline is the other k−1)")
    prompts_per_rollout: int = option(8, "prompts sampled per round")
    batch_size: int = option(8, "responses per micro-batch")
    grad_accum: int = option(4, "micro-batches per optimizer step")
    beta: float = option(0.05, "KL coefficient β: r = score − β·Σ_t KL_t (k1 by default)")
    prefix_sharing: bool = prefix_sharing_option(False)


class GroupMethod(PrefixSharingMixin, OnlineMethod):
    """G samples per prompt. With `--prefix-sharing` the forward passes over them (π_old, reference, updates) hold
    each distinct prompt of a micro-batch once. Off by default: not yet measured faster here (update mini-batches
    are shuffled, so a micro-batch shares only the samples of a prompt it happens to hold), and the π_old and
    reference passes group the samples differently from the updates, so at step 1 the KL is ~1e-15, not exactly 0."""

    def check_config(self) -> None:
        super().check_config()
        if self.config.num_samples < 2:
            raise ConfigError(f"bridle {self.name} compares responses within a group: --num-samples must be >= 2.")

    def prepare_model(self, model: nn.Module) -> None:
        super().prepare_model(model)
        self.check_prefix_sharing(decoder_body(self.policy_of(model)))

    def before_training(self, model: nn.Module, train_items: Sequence[Any], eval_items: Sequence[Any]) -> None:
        super().before_training(model, train_items, eval_items)
        reference = getattr(self, "reference", None)
        if self.share_prefix and reference is not None:  # a separate --reference-model goes through them too
            problem = causal_lm_sharing_problem(reference, max_length=self.config.max_length)
            if problem is not None:
                self.prefix_sharing_off(problem)


@method("grpo")
class GRPO(GroupMethod):
    """GRPO: group-normalized advantages, clipped ratio, k3 KL to the reference in the loss."""

    Config = GRPOConfig
    summary = "GRPO: G samples per prompt, group-normalized rewards as advantages, KL in the loss (no critic)"
    config: GRPOConfig

    @property
    def aggregation(self) -> str:  # type: ignore[override]
        return self.config.loss_aggregation

    def advantages(self, model: nn.Module, items: list[Experience]) -> dict[str, Any]:
        scores = torch.tensor([e.score for e in items])
        advantages = group_normalize(scores, self.config.num_samples, scale=self.config.scale_rewards)
        for item, a in zip(items, advantages):
            item.advantages = a
        spread = scores.view(-1, self.config.num_samples).std(-1)
        return {"reward/group_std": float(spread.mean()), "reward/zero_std_groups": float((spread == 0).float().mean())}

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        logps, _ = response_logps(model, batch, temperature=self.temperature)
        c = self.config
        loss, metrics = objectives.grpo(logps, self.old_logps(batch, logps), batch.get("ref_logps"),
                                        batch["advantages"], batch["response_mask"], clip_eps=c.clip_eps,
                                        clip_eps_high=c.clip_eps_high or None, beta=c.beta,
                                        aggregation=c.loss_aggregation)
        if "kl/ref" in metrics:  # a token mean of k3 here; PPO and RLOO log kl/ref per response
            metrics["kl/ref_per_token"] = metrics.pop("kl/ref")
        return StepOutput(loss, metrics)


@method("rloo")
class RLOO(GroupMethod):
    """RLOO: leave-one-out baseline on KL-penalized sequence rewards, REINFORCE-style sequence loss."""

    Config = RLOOConfig
    summary = "RLOO: k samples per prompt, each baselined by the mean reward of the other k-1 (no critic)"
    aggregation = "sequence_sum"
    config: RLOOConfig

    def advantages(self, model: nn.Module, items: list[Experience]) -> dict[str, Any]:
        scores = torch.tensor([e.score for e in items])
        kl = torch.zeros_like(scores)
        if items and items[0].ref_logps is not None:
            kl = torch.stack([kl_penalty(e.sample_logps, e.ref_logps, self.config.kl_estimator).sum() for e in items])
        rewards = scores - self.config.beta * kl
        for item, a in zip(items, leave_one_out(rewards, self.config.num_samples)):
            item.advantages = a
        return {"kl/ref": float(kl.mean()), "reward/with_kl": float(rewards.mean())}

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        logps, _ = response_logps(model, batch, temperature=self.temperature)
        loss, metrics = objectives.ppo_policy(logps, self.old_logps(batch, logps), batch["advantages"],
                                              batch["response_mask"], clip_eps=self.config.clip_eps,
                                              aggregation="sequence_sum")
        return StepOutput(loss, metrics)
