"""Reward modelling (RLHF stage 2): a scalar head on a causal LM, trained with the Bradley-Terry pairwise loss."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bridle import objectives
from bridle.config import TrainConfig, option
from bridle.data import TokenizedPair, load_preference_dataset, pair_collate
from bridle.data.padding_free import padding_free_collate
from bridle.data.shared_prefix import shared_prefix_collate
from bridle.engine import StepOutput
from bridle.engine.logging import console
from bridle.errors import ConfigError
from bridle.methods.base import Method, method
from bridle.methods.sharing import PrefixSharingMixin, chosen_first, prefix_sharing_option
from bridle.methods.splits import train_and_eval
from bridle.models import lora_settings, unwrap
from bridle.models.reward import (
    STATS_FILE,
    apply_reward_lora,
    load_reward_model,
    packed_reward_scores,
    packed_score_ends,
    reward_scores,
    save_reward_model,
    score_positions,
    score_sequences,
    shared_reward_scores,
)


@dataclass
class RMConfig(TrainConfig):
    eval_fraction: float = option(0.05, "fraction of --data held out for evaluation when --eval-data is empty")
    eval_every: int = option(50, "evaluate loss, pairwise accuracy and margin on the held-out pairs every N steps")
    lr: float = option(1e-5, "peak learning rate (AdamW)")
    center_coef: float = option(0.0, "reward-centering coefficient c: adds c·mean((r_c + r_r)²); 0.01 is typical")
    max_prompt_length: int = option(0, "prompt tokens kept (its last ones) when a pair is too long; 0 = max_length/2")
    padding_free: bool = option(False, "pack the 2B sequences of a batch into one row (position_ids, no padding)")
    prefix_sharing: bool = prefix_sharing_option()
    stats_max_responses: int = option(2000, "responses scored after training for reward_stats.json (seeded sample)")


def prompt_limit(config: RMConfig) -> int:
    limit = config.max_prompt_length or config.max_length // 2
    if not 0 < limit < config.max_length:
        raise ConfigError(f"--max-prompt-length must be in (0, --max-length={config.max_length}); got {limit}.")
    return limit


@method("rm")
class RewardModelling(PrefixSharingMixin, Method):
    Config = RMConfig
    summary = "reward model: scalar head on a causal LM, Bradley-Terry loss on preference pairs (RLHF stage 2)"
    config: RMConfig

    def build_datasets(self) -> tuple[Sequence[Any], Sequence[Any], str]:
        cfg = self.config
        load = dict(max_length=cfg.max_length, max_prompt_length=prompt_limit(cfg), on_bad_row=cfg.on_bad_row)
        pairs, eval_pairs, lines = train_and_eval(cfg, lambda src: load_preference_dataset(src, self.tokenizer, **load))
        return pairs, eval_pairs, "\n".join(lines)

    def build_model(self) -> nn.Module:
        cfg = self.config
        model = load_reward_model(cfg.model, dtype=cfg.model_dtype, pad_token_id=self.tokenizer.pad_token_id,
                                  gradient_checkpointing=cfg.gradient_checkpointing,
                                  attn_implementation=cfg.attn_implementation)
        return apply_reward_lora(model, lora_settings(cfg)) if cfg.lora else model

    def prepare_model(self, model: nn.Module) -> None:
        base = unwrap(model)
        self.check_prefix_sharing(getattr(base, base.base_model_prefix))

    def before_training(self, model: nn.Module, train_items: Sequence[Any], eval_items: Sequence[Any]) -> None:
        self.train_pairs = train_items  # scored again after training for reward_stats.json

    def collate(self, items: Sequence[TokenizedPair]) -> dict[str, Any]:
        sequences = [p.chosen for p in items] + [p.rejected for p in items]
        if self.share_prefix:
            batch = shared_prefix_for_rewards(items, pad_id=self.tokenizer.pad_token_id,
                                              one_row=self.config.padding_free)
        elif self.config.padding_free:
            batch = padding_free_collate(sequences)
            ends = packed_score_ends([s.input_ids for s in sequences], self.tokenizer.pad_token_id)
            batch = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "ends": ends}
        else:
            full = pair_collate(items, pad_id=self.tokenizer.pad_token_id)
            batch = {"input_ids": full["input_ids"], "attention_mask": full["attention_mask"]}
        batch["margin"] = torch.tensor([p.margin for p in items], dtype=torch.float32)
        batch.update(num_pairs=len(items), weight=len(items),
                     num_tokens=sum(len(s.input_ids) for s in sequences))
        return batch

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        if "owner" in batch:
            rewards = chosen_first(shared_reward_scores(model, batch))
        elif "ends" in batch:
            rewards = packed_reward_scores(model, batch["input_ids"], batch["position_ids"], batch["ends"])
        else:
            rewards = reward_scores(model, batch["input_ids"], batch["attention_mask"])
        n = int(batch["num_pairs"])
        loss, metrics = objectives.bradley_terry(rewards[:n], rewards[n:], margin=batch["margin"],
                                                 center_coef=self.config.center_coef)
        return StepOutput(loss, metrics)

    def save(self, model: nn.Module, out_dir: Path) -> Path:
        """A HF sequence-classification dir (LoRA adapter, or merged with --merge-lora) + tokenizer, loadable by
        plain transformers / peft with no extra arguments (see `save_reward_model`)."""
        return save_reward_model(model, self.tokenizer, out_dir, merge_lora=self.config.merge_lora)

    def finish(self, model: nn.Module, out_dir: Path) -> dict[str, Any]:
        """Score the training responses once more, so later stages can normalize rewards the same way."""
        stats = reward_statistics(model, getattr(self, "train_pairs", []), pad_id=self.tokenizer.pad_token_id,
                                  cap=self.config.stats_max_responses, seed=self.config.seed,
                                  batch_size=2 * self.config.batch_size)
        stats.update(max_length=self.config.max_length, max_prompt_length=prompt_limit(self.config))
        (Path(out_dir) / STATS_FILE).write_text(json.dumps(stats, indent=1))
        console.print(f"reward statistics over {stats['count']} training responses: mean {stats['mean']:.4f}, "
                      f"std {stats['std']:.4f} (written to {Path(out_dir) / STATS_FILE})")
        return {"reward_stats": stats}


def shared_prefix_for_rewards(items: Sequence[TokenizedPair], *, pad_id: int, one_row: bool) -> dict[str, Any]:
    """A prefix-shared batch of the pairs (chosen, rejected per pair) with `ends`: where each sequence's score
    position (`score_positions` on the sequence alone, the plain layouts' rule) lies in the shared batch."""
    shared = shared_prefix_collate([(p.chosen, p.rejected) for p in items], pad_id=pad_id, one_row=one_row)
    where = shared["where"]
    ids = torch.full(where.shape, pad_id, dtype=torch.long)
    mask = torch.zeros(where.shape, dtype=torch.long)
    for row, sequence in enumerate(s for p in items for s in (p.chosen, p.rejected)):
        ids[row, :len(sequence.input_ids)] = torch.tensor(sequence.input_ids, dtype=torch.long)
        mask[row, :len(sequence.input_ids)] = 1  # from lengths
    at = score_positions(ids, mask, pad_id)
    ends = where[torch.arange(len(at)), at]
    return {k: shared[k] for k in ("input_ids", "position_ids", "owner", "block")} | {"ends": ends}


def reward_statistics(model: nn.Module, pairs: Sequence[TokenizedPair], *, pad_id: int, cap: int, seed: int,
                      batch_size: int = 8) -> dict[str, Any]:
    """Mean and std of the model's rewards over the chosen and rejected responses of `pairs` (a seeded sample
    of at most `cap` of those responses; `count` and `total_responses` say how many)."""
    sequences = [p.chosen.input_ids for p in pairs] + [p.rejected.input_ids for p in pairs]
    total = len(sequences)
    if cap > 0 and total > cap:
        sequences = random.Random(seed).sample(sequences, cap)
    scores = score_sequences(model, sequences, pad_id=pad_id, batch_size=batch_size)
    n = len(scores)
    mean = sum(scores) / n if n else 0.0
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if n > 1 else 1.0
    return {"mean": mean, "std": std, "count": n, "total_responses": total, "sampled": n < total}
