"""DPO and its pairwise family (cDPO, robust DPO, IPO, hinge), SimPO and ORPO: preference pairs, one forward pass.

Chosen and rejected rows go through the model together: by default prefix-shared (`--prefix-sharing`, one row per
pair holding the prompt once, `bridle.data.shared_prefix`), else `pair_collate` (2B rows, chosen first); with
`--padding-free` all of a batch's rows go back to back in one row. Methods that need a reference get its log-probs
from one pass before training (`reference.ReferenceMixin`, cached on disk, prefix-shared too) as `ref_chosen` /
`ref_rejected` on each pair, so no reference model is held while the policy trains.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bridle import objectives
from bridle.config import option
from bridle.data import TokenizedPair, load_preference_dataset, pair_collate
from bridle.data.padding_free import padding_free_collate
from bridle.data.shared_prefix import shared_prefix_collate
from bridle.engine import StepOutput
from bridle.engine.distributed import global_mean
from bridle.errors import ConfigError
from bridle.methods.base import Method, method
from bridle.methods.preference import PreferenceConfig, check_positive
from bridle.methods.reference import ReferenceMixin
from bridle.methods.sharing import PrefixSharingMixin, chosen_first, decoder_body
from bridle.methods.splits import train_and_eval
from bridle.ops import causal_lm_logps
from bridle.ops.shared_prefix import sequence_sums, shared_prefix_token_logps


def sequence_logps(model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Summed completion log-probs and completion lengths per sequence, (N,) each: padded, padding-free, or
    prefix-shared (sequences in group order there: chosen, rejected of pair 0, then pair 1, ...)."""
    if "sources" in batch:
        return sequence_sums(shared_prefix_token_logps(model, batch)[0], batch)
    selected = causal_lm_logps(model, batch["input_ids"], batch["labels"], attention_mask=batch.get("attention_mask"),
                               position_ids=batch.get("position_ids"))
    if "segment" not in batch:
        return selected.row_sums(), selected.mask.sum(-1)
    segment = batch["segment"][:, 1:][selected.mask]
    count = int(batch["num_sequences"])
    sums = selected.token_logps.new_zeros(count).index_add(0, segment, selected.token_logps)
    return sums, torch.bincount(segment, minlength=count)


class PreferenceMethod(PrefixSharingMixin, ReferenceMixin, Method):
    """Pairwise preference data in, `loss(batch, chosen, rejected, chosen_len, rejected_len)` out."""

    config: PreferenceConfig
    reference_fields = {"chosen": "ref_chosen", "rejected": "ref_rejected"}

    def build_datasets(self) -> tuple[Sequence[Any], Sequence[Any], str]:
        cfg = self.config
        load = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length or None,
                    on_bad_row=cfg.on_bad_row)
        pairs, eval_pairs, lines = train_and_eval(cfg, lambda src: load_preference_dataset(src, self.tokenizer, **load))
        return pairs, eval_pairs, "\n".join(lines)

    def prepare_model(self, model: nn.Module) -> None:
        self.check_prefix_sharing(decoder_body(model))

    def collate(self, items: Sequence[TokenizedPair]) -> dict[str, Any]:
        if self.share_prefix:
            batch = shared_prefix_collate([(p.chosen, p.rejected) for p in items], pad_id=self.tokenizer.pad_token_id,
                                          one_row=self.config.padding_free)
            batch["num_tokens"] = sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in items)
        elif self.config.padding_free:
            batch = padding_free_collate([p.chosen for p in items] + [p.rejected for p in items])
            batch.update(num_sequences=2 * len(items), num_tokens=int(batch["input_ids"].numel()))
        else:
            batch = pair_collate(items, pad_id=self.tokenizer.pad_token_id)
        batch["num_pairs"] = len(items)
        batch["weight"] = len(items)
        if self.needs_reference:
            batch["ref_chosen"] = self.reference_tensor(items, "ref_chosen")
            batch["ref_rejected"] = self.reference_tensor(items, "ref_rejected")
        return batch

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        logps, lengths = sequence_logps(model, batch)
        if "sources" in batch:
            logps, lengths = chosen_first(logps), chosen_first(lengths)
        n = int(batch["num_pairs"])
        loss, metrics = self.loss(batch, logps[:n], logps[n:], lengths[:n], lengths[n:])
        return StepOutput(loss, metrics)

    @abstractmethod
    def loss(self, batch: dict[str, Any], chosen: Tensor, rejected: Tensor, chosen_len: Tensor, rejected_len: Tensor
             ) -> tuple[Tensor, dict[str, Tensor]]:
        """The method's objective on summed completion log-probs and lengths, (B,) each."""


@dataclass
class DPOConfig(PreferenceConfig):
    loss: str = option("sigmoid", "sigmoid = DPO (with --label-smoothing: cDPO), robust = robust DPO, ipo = IPO, "
                                  "hinge = SLiC hinge", ("sigmoid", "ipo", "robust", "hinge"))
    label_smoothing: float = option(0.0, "ε: assumed fraction of flipped labels (cDPO with sigmoid; robust DPO)")
    ipo_per_token: bool = option(False, "IPO on per-token-averaged log-ratios (TRL's form) instead of summed ones")


@method("dpo")
class DPO(PreferenceMethod):
    Config = DPOConfig
    summary = "Direct Preference Optimization and its family (cDPO, robust, IPO, hinge) on preference pairs"
    config: DPOConfig

    def __init__(self, config: DPOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        check_positive(config, "beta")
        if not 0.0 <= config.label_smoothing < 0.5:
            raise ConfigError(f"key 'label_smoothing' must be in [0, 0.5); got {config.label_smoothing}.")
        if config.label_smoothing and config.loss in ("ipo", "hinge"):
            raise ConfigError(f"--label-smoothing applies to --loss sigmoid (cDPO) or robust, not {config.loss}.")

    def loss(self, batch: dict[str, Any], chosen: Tensor, rejected: Tensor, chosen_len: Tensor, rejected_len: Tensor
             ) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        args = (chosen, rejected, batch["ref_chosen"], batch["ref_rejected"])
        if cfg.loss == "sigmoid":
            return objectives.dpo(*args, beta=cfg.beta, label_smoothing=cfg.label_smoothing)
        if cfg.loss == "robust":
            return objectives.robust_dpo(*args, beta=cfg.beta, label_smoothing=cfg.label_smoothing)
        if cfg.loss == "ipo":
            lengths = dict(chosen_lengths=chosen_len, rejected_lengths=rejected_len) if cfg.ipo_per_token else {}
            return objectives.ipo(*args, beta=cfg.beta, **lengths)
        return objectives.hinge(*args, beta=cfg.beta)


@dataclass
class SimPOConfig(PreferenceConfig):
    beta: float = option(2.0, "β: scale of the length-normalized reward (SimPO uses 2-2.5)")
    gamma: float = option(1.0, "γ: target reward margin between chosen and rejected")


@method("simpo")
class SimPO(PreferenceMethod):
    Config = SimPOConfig
    summary = "SimPO: reference-free, length-normalized preference optimization on pairs"
    needs_reference = False
    config: SimPOConfig

    def loss(self, batch: dict[str, Any], chosen: Tensor, rejected: Tensor, chosen_len: Tensor, rejected_len: Tensor
             ) -> tuple[Tensor, dict[str, Tensor]]:
        return objectives.simpo(chosen, rejected, chosen_len, rejected_len, beta=self.config.beta,
                                gamma=self.config.gamma)


@dataclass
class ORPOConfig(PreferenceConfig):
    lr: float = option(8e-6, "peak learning rate (AdamW)")
    lam: float = option(0.1, "λ: weight of the odds-ratio term next to the SFT loss on chosen responses")


@method("orpo")
class ORPO(PreferenceMethod):
    Config = ORPOConfig
    summary = "ORPO: SFT plus an odds-ratio preference penalty in one stage, no reference model"
    needs_reference = False
    config: ORPOConfig

    def loss(self, batch: dict[str, Any], chosen: Tensor, rejected: Tensor, chosen_len: Tensor, rejected_len: Tensor
             ) -> tuple[Tensor, dict[str, Tensor]]:
        # L_SFT, the token mean over the chosen completions of the whole batch: this batch's log-probs over its
        # pairs × the global batch's chosen tokens per pair. The engine weights each process's loss by its pairs,
        # so the processes' shares add up to one process's token mean; alone, the divisor is this batch's tokens
        tokens_per_pair = global_mean(chosen_len.float(), counted=float(batch["weight"]) > 0)
        nll = -chosen.sum() / (tokens_per_pair * len(chosen)).clamp(min=1)
        return objectives.orpo(chosen, rejected, chosen_len, rejected_len, nll, lam=self.config.lam)
