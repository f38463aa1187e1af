"""PPO for RLHF (Ouyang et al. 2022, stage 3; Ziegler et al. 2019): a critic, GAE, and a per-token KL penalty to the
frozen reference in the reward, r_t = −β·KL_t (+ the reward model's score on the last token).

Implementation details (Huang et al., "The N Implementation Details of RLHF with PPO", ICLR 2024 blog track, and
"The N+ Implementation Details of RLHF with PPO: A Case Study on TL;DR Summarization", 2024; docs/methods/ppo.md
lists them one by one): log-probs at the sampling temperature; the score on the last token and the KL penalty on
every token; k1 KL by default; a penalty for responses that never reach EOS (`--missing-eos-penalty`); reward-model
scores normalized with the training statistics (`bridle rm`); score clipping (±10 by default, ours) and optional
reward whitening; advantages whitened over the round; clipped value loss; several epochs over shuffled mini-batches
per round; adaptive KL controller (Ziegler eq. 2); value model optionally initialized from the reward model
(`--value-model`, its head rescaled to the normalized reward scale).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bridle import objectives
from bridle.config import option
from bridle.engine import StepOutput
from bridle.errors import ConfigError
from bridle.methods.base import method
from bridle.methods.experience import Experience, response_logps
from bridle.methods.online import OnlineConfig, OnlineMethod
from bridle.models.value import CRITICS, PolicyAndValue, build_policy_and_value
from bridle.objectives.kl_control import KLController
from bridle.ops import gae, kl_penalty, whiten


@dataclass
class PPOConfig(OnlineConfig):
    beta: float = option(0.05, "KL coefficient β in r_t = −β·KL_t (the start value when --kl-target is set)")
    kl_target: float = option(0.0, "adaptive KL: steer β so the per-response KL approaches this (nats); 0 = fixed β")
    kl_horizon: int = option(10000, "adaptive KL horizon (responses), Ziegler et al. 2019")
    update_epochs: int = option(4, "passes over each round's responses (PPO epochs)")
    prompts_per_rollout: int = option(16, "prompts sampled per round")
    critic: str = option("separate", "value model: its own model; a value head on the policy's trunk; or (with "
                                     "--lora) a second LoRA adapter on the policy's base", CRITICS)
    value_model: str = option("", "weights the separate critic starts from (e.g. the `bridle rm` model dir, as "
                                  "InstructGPT does); empty = the policy's")
    vf_coef: float = option(0.1, "weight of the value loss")
    vf_clip: float = option(0.2, "value clip range around the rollout-time values")
    gamma: float = option(1.0, "GAE discount γ")
    lam: float = option(0.95, "GAE λ")
    reward_clip: float = option(10.0, "clip the score to ±this before adding it; 0 = no clipping")
    whiten_rewards: bool = option(False, "whiten per-token rewards across the round before GAE")


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@method("ppo")
class PPO(OnlineMethod):
    """PPO with a critic, GAE and a KL-penalized reward (fixed or adaptive β)."""

    Config = PPOConfig
    summary = "PPO (RLHF stage 3): critic + GAE, reward = score − β·KL to the reference (fixed or adaptive β)"
    config: PPOConfig

    def check_config(self) -> None:
        super().check_config()
        if self.config.beta < 0 or self.config.kl_target < 0:
            raise ConfigError("--beta and --kl-target must be >= 0.")
        if self.config.kl_target > 0 and self.config.beta == 0:
            raise ConfigError("--kl-target adapts β from its start value, which is 0 (--beta 0): give --beta > 0.")

    def build_model(self) -> nn.Module:
        c = self.config
        return build_policy_and_value(c, critic=c.critic, value_model=c.value_model,
                                      normalize_reward=c.normalize_reward, pad_token_id=self.tokenizer.pad_token_id)

    def policy_of(self, model: nn.Module) -> nn.Module:
        return model.policy

    def before_training(self, model: nn.Module, train_items: Any, eval_items: Any) -> None:
        super().before_training(model, train_items, eval_items)
        c = self.config
        self.kl = KLController(c.beta, c.kl_target or None, c.kl_horizon)

    def _values(self, model: PolicyAndValue, batch: dict[str, Any]) -> Tensor:
        if model.shares_forward:
            _, selected = response_logps(model.policy, batch, temperature=self.temperature, return_hidden=True)
            return model.values(batch, selected.hidden)
        return model.values(batch)

    def freeze_old(self, model: nn.Module, items: Sequence[Experience], device: torch.device) -> None:
        """A value head on the policy's trunk reads the same forward pass as π_old: one pass sets both."""
        if not model.shares_forward:
            return super().freeze_old(model, items, device)

        def logps_and_values(batch: dict[str, Any]) -> Tensor:
            logps, selected = response_logps(model.policy, batch, temperature=self.temperature, return_hidden=True)
            return torch.stack([logps, model.values(batch, selected.hidden)], dim=-1)

        with evaluation_mode(model):
            for item, both in zip(items, self.token_pass(items, logps_and_values, device)):
                item.old_logps, item.old_values = both[:, 0], both[:, 1]

    def advantages(self, model: nn.Module, items: list[Experience]) -> dict[str, Any]:
        c = self.config
        values = [item.old_values for item in items]
        if any(v is None for v in values):  # not already read in the π_old pass
            with evaluation_mode(model):
                values = self.token_pass(items, lambda b: self._values(model, b), next(model.parameters()).device)
        coef = self.kl.coef
        kl_sums, scores = [], []
        rewards = []
        for item, value in zip(items, values):
            policy_logps = item.old_logps if item.old_logps is not None else item.sample_logps
            kl = (kl_penalty(policy_logps, item.ref_logps, c.kl_estimator) if item.ref_logps is not None
                  else torch.zeros_like(policy_logps))
            score = max(-c.reward_clip, min(c.reward_clip, item.score)) if c.reward_clip > 0 else item.score
            reward = -coef * kl
            reward[-1] += score
            item.old_values = value
            rewards.append(reward)
            kl_sums.append(float(kl.sum()))
            scores.append(score)
        width = max(len(r) for r in rewards)
        mask = torch.zeros(len(items), width, dtype=torch.bool)
        padded_rewards, padded_values = torch.zeros(len(items), width), torch.zeros(len(items), width)
        for i, (reward, value) in enumerate(zip(rewards, values)):
            mask[i, :len(reward)] = True
            padded_rewards[i, :len(reward)], padded_values[i, :len(value)] = reward, value
        if c.whiten_rewards:
            padded_rewards = whiten(padded_rewards, mask, shift_mean=False)
        advantages, returns = gae(padded_rewards, padded_values, mask, gamma=c.gamma, lam=c.lam)
        advantages = whiten(advantages, mask)
        for i, item in enumerate(items):
            item.advantages, item.returns = advantages[i, :item.length], returns[i, :item.length]
        mean_kl = sum(kl_sums) / len(kl_sums)
        self.kl.update(mean_kl, len(items))
        return {"kl/ref": mean_kl, "kl/coef": coef, "reward/score": sum(scores) / len(scores),
                "reward/total": float((padded_rewards * mask).sum(-1).mean()),
                "value/rollout_mean": float(padded_values[mask].mean())}

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        c = self.config
        shared = model.shares_forward
        logps, selected = response_logps(model.policy, batch, temperature=self.temperature, return_hidden=shared)
        values = model.values(batch, selected.hidden) if shared else model.values(batch)
        mask = batch["response_mask"]
        policy_loss, metrics = objectives.ppo_policy(logps, self.old_logps(batch, logps), batch["advantages"], mask,
                                                     clip_eps=c.clip_eps)
        value_loss, value_metrics = objectives.ppo_value(values, batch["old_values"], batch["returns"], mask,
                                                         clip_range=c.vf_clip)
        metrics.update(value_metrics)
        metrics.update({"loss/policy": policy_loss.detach(), "loss/value": value_loss.detach()})
        return StepOutput(policy_loss + c.vf_coef * value_loss, metrics)

    def save(self, model: nn.Module, out_dir: Path) -> Path:
        if model.critic_adapter is not None:  # training is over: the saved policy is the policy adapter alone
            model.policy.delete_adapter(model.critic_adapter)
            model.critic_adapter = None
        return super().save(model.policy, out_dir)

    def state_dict(self) -> dict[str, Any]:
        return {"kl": self.kl.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kl.load_state_dict(state.get("kl", {"coef": self.config.beta}))
