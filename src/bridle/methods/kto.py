"""KTO: unpaired good/bad feedback (or preference pairs split in two), reference log-probs precomputed and cached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from bridle import objectives
from bridle.config import option
from bridle.data import TokenizedUnpaired, load_unpaired_dataset, unpaired_collate
from bridle.engine import StepOutput
from bridle.engine.distributed import global_mean
from bridle.methods.base import Method, method
from bridle.methods.preference import PreferenceConfig, check_positive
from bridle.methods.reference import ReferenceMixin
from bridle.methods.splits import train_and_eval
from bridle.ops import causal_lm_logps


@dataclass
class KTOConfig(PreferenceConfig):
    padding_free: bool = option(False, "not used by kto (kept for a shared config file)")
    prefix_sharing: bool = option(False, "not used by kto yet (kept for a shared config file)")
    desirable_weight: float = option(1.0, "λ_D: weight of desirable examples' loss")
    undesirable_weight: float = option(1.0, "λ_U: weight of undesirable examples' loss (raise when they are rarer)")


@method("kto")
class KTO(ReferenceMixin, Method):
    Config = KTOConfig
    summary = "KTO: learn from responses labelled good or bad (unpaired data, or pairs split in two)"
    config: KTOConfig
    reference_fields = {"example": "ref_logps", "kl_example": "ref_kl_logps"}

    def __init__(self, config: KTOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        check_positive(config, "beta", "desirable_weight", "undesirable_weight")

    def build_datasets(self) -> tuple[Sequence[Any], Sequence[Any], str]:
        cfg = self.config
        load = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length or None,
                    on_bad_row=cfg.on_bad_row, seed=cfg.seed)
        items, eval_items, lines = train_and_eval(cfg, lambda src: load_unpaired_dataset(src, self.tokenizer, **load))
        good = sum(it.desirable for it in items)
        lines.insert(1, f"train items: {good} desirable, {len(items) - good} undesirable")
        return items, eval_items, "\n".join(lines)

    def collate(self, items: Sequence[TokenizedUnpaired]) -> dict[str, Any]:
        batch = unpaired_collate(items, pad_id=self.tokenizer.pad_token_id)
        batch.update(ref_logps=self.reference_tensor(items, "ref_logps"),
                     ref_kl_logps=self.reference_tensor(items, "ref_kl_logps"), weight=len(items))
        return batch

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        logps = causal_lm_logps(model, batch["input_ids"], batch["labels"],
                                attention_mask=batch["attention_mask"]).row_sums()
        with torch.no_grad():  # z0 is detached: the KL twins need no graph
            kl_logps = causal_lm_logps(model, batch["kl_input_ids"], batch["kl_labels"],
                                       attention_mask=batch["kl_attention_mask"]).row_sums()
        cfg = self.config
        # z0 over every process's share of the global batch, as one process takes it over the whole batch
        kl_mean = partial(global_mean, counted=float(batch["weight"]) > 0)
        loss, metrics = objectives.kto(logps, batch["ref_logps"], batch["desirable"], kl_logps, batch["ref_kl_logps"],
                                       beta=cfg.beta, desirable_weight=cfg.desirable_weight,
                                       undesirable_weight=cfg.undesirable_weight, kl_mean=kl_mean)
        return StepOutput(loss, metrics)
