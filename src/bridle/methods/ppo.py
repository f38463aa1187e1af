"""PPO for RLHF (Ouyang et al. 2022, stage 3; Ziegler et al. 2019): a critic, GAE, and a per-token KL penalty to the
frozen reference in the reward, r_t = −β·KL_t (+ the reward model's score on the last token).

Implementation details followed (Huang et al. 2022/2023, "The N Implementation Details of RLHF with PPO"): log-probs
at the sampling temperature; the score on the EOS/last token and the KL penalty on every token; k1 KL by default;
a penalty for responses that never reach EOS (`--missing-eos-penalty`); reward-model scores normalized with the
training statistics (`bridle rm`); optional score clipping and reward whitening; advantages whitened per round;
clipped value loss; several epochs over shuffled mini-batches per round; adaptive KL controller (Ziegler eq. 2);
value model optionally initialized from the reward model (`--value-model`).
"""

from __future__ import annotations

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
from bridle.methods.experience import Experience, response_logps, to_response
from bridle.methods.online import OnlineConfig, OnlineMethod
from bridle.methods.runner import build_causal_lm, lora_settings
from bridle.models.reward import apply_reward_lora, init_score_head, load_reward_model
from bridle.objectives.kl_control import KLController
from bridle.ops import gae, kl_penalty, whiten


@dataclass
class PPOConfig(OnlineConfig):
    output_dir: str = option("runs/ppo", "where config.yaml, metrics.jsonl, run.json, checkpoints and the model go")
    beta: float = option(0.05, "KL coefficient β in r_t = −β·KL_t (the start value when --kl-target is set)")
    kl_target: float = option(0.0, "adaptive KL: steer β so the per-response KL approaches this (nats); 0 = fixed β")
    kl_horizon: int = option(10000, "adaptive KL horizon (responses), Ziegler et al. 2019")
    update_epochs: int = option(4, "passes over each round's responses (PPO epochs)")
    prompts_per_rollout: int = option(16, "prompts sampled per round")
    critic: str = option("separate", "value model: its own model, or a value head on the policy's trunk",
                         ("separate", "shared"))
    value_model: str = option("", "weights the separate critic starts from (e.g. the `bridle rm` model dir, as "
                                  "InstructGPT does); empty = the policy's")
    vf_coef: float = option(0.1, "weight of the value loss")
    vf_clip: float = option(0.2, "value clip range around the rollout-time values")
    gamma: float = option(1.0, "GAE discount γ")
    lam: float = option(0.95, "GAE λ")
    reward_clip: float = option(10.0, "clip the score to ±this before adding it; 0 = no clipping")
    whiten_rewards: bool = option(False, "whiten per-token rewards across the round before GAE")


class PolicyAndValue(nn.Module):
    """What PPO trains: the policy and a scalar value head, either on the policy's own trunk (`critic` None) or on
    a separate critic model (a sequence-classification model: body + `score` head)."""

    def __init__(self, policy: nn.Module, value_head: nn.Linear | None = None, critic: nn.Module | None = None
                 ) -> None:
        super().__init__()
        if (value_head is None) == (critic is None):
            raise ValueError("give exactly one of value_head (shared trunk) or critic (separate model)")
        self.policy, self.value_head, self.critic = policy, value_head, critic

    def values(self, batch: dict[str, Any], hidden: Tensor | None = None) -> Tensor:
        """(B, R) values V(s_t) of the state each response token is sampled from. Shared trunk: `hidden` is the
        policy's decoder state at those positions (from the same forward pass)."""
        if self.critic is None:
            if hidden is None:
                raise ValueError("a shared-trunk value head needs the policy's hidden states")
            return to_response(self.value_head(hidden).squeeze(-1).float(), batch["response_mask"])
        from bridle.models import unwrap

        base = unwrap(self.critic)
        body = getattr(base, base.base_model_prefix)
        states = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      use_cache=False).last_hidden_state[:, :-1]
        selected = states[batch["labels"][:, 1:] != -100]
        return to_response(base.score(selected).squeeze(-1).float(), batch["response_mask"])


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

    def build_model(self) -> nn.Module:
        c = self.config
        policy = build_causal_lm(c)
        if c.critic == "shared":
            hidden = policy.get_output_embeddings().in_features
            head = nn.Linear(hidden, 1)
            nn.init.normal_(head.weight, std=1.0 / (hidden + 1) ** 0.5)
            nn.init.zeros_(head.bias)
            return PolicyAndValue(policy, value_head=head)
        critic = load_reward_model(c.value_model or c.model, dtype=c.model_dtype,
                                   pad_token_id=self.tokenizer.pad_token_id, init_head=not c.value_model,
                                   gradient_checkpointing=c.gradient_checkpointing)
        if not c.value_model:
            init_score_head(critic)
        if critic.config.vocab_size != policy.config.vocab_size:
            raise ConfigError(f"--value-model {c.value_model} has a vocabulary of {critic.config.vocab_size} tokens "
                              f"but the policy has {policy.config.vocab_size}; the critic must share its tokenizer.")
        if c.lora:
            critic = apply_reward_lora(critic, lora_settings(c))
        return PolicyAndValue(policy, critic=critic)

    def policy_of(self, model: nn.Module) -> nn.Module:
        return model.policy

    def before_training(self, model: nn.Module, train_items: Any, eval_items: Any) -> None:
        super().before_training(model, train_items, eval_items)
        c = self.config
        self.kl = KLController(c.beta, c.kl_target or None, c.kl_horizon)

    def _values(self, model: PolicyAndValue, batch: dict[str, Any]) -> Tensor:
        if model.critic is None:
            _, selected = response_logps(model.policy, batch, temperature=self.temperature, return_hidden=True)
            return model.values(batch, selected.hidden)
        return model.values(batch)

    def advantages(self, model: nn.Module, items: list[Experience]) -> dict[str, Any]:
        c = self.config
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        values = self.token_pass(items, lambda b: self._values(model, b), device)
        model.train(was_training)
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
        shared = model.critic is None
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
        return super().save(model.policy, out_dir)

    def state_dict(self) -> dict[str, Any]:
        return {"kl": self.kl.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kl.load_state_dict(state.get("kl", {"coef": self.config.beta}))
