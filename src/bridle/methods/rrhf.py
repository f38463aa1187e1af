"""RRHF: several scored responses per prompt, ranked with a hinge on length-normalized log-probs; no reference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from bridle import objectives
from bridle.config import TrainConfig, option
from bridle.data import TokenizedRanked, load_ranked_dataset, ranked_collate
from bridle.data.ranked import ranked_grid
from bridle.data.shared_prefix import shared_prefix_collate
from bridle.engine import StepOutput
from bridle.methods.base import Method, method
from bridle.methods.sharing import PrefixSharingMixin, decoder_body, prefix_sharing_option
from bridle.methods.splits import train_and_eval
from bridle.ops import causal_lm_logps
from bridle.ops.shared_prefix import sequence_sums, shared_prefix_token_logps


@dataclass
class RRHFConfig(TrainConfig):
    lr: float = option(2e-5, "peak learning rate (AdamW)")
    batch_size: int = option(2, "prompts per micro-batch (each brings all of its responses)")
    max_prompt_length: int = option(0, "prompt tokens kept when a response is too long (from the end); 0 = half")
    sft_weight: float = option(1.0, "weight of the SFT loss on the best-scored response next to the ranking loss")
    prefix_sharing: bool = prefix_sharing_option()


@method("rrhf")
class RRHF(PrefixSharingMixin, Method):
    Config = RRHFConfig
    summary = "RRHF: rank several scored responses per prompt (ranked data; pairs count as two responses)"
    config: RRHFConfig

    def build_datasets(self) -> tuple[Sequence[Any], Sequence[Any], str]:
        cfg = self.config
        load = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length or None,
                    on_bad_row=cfg.on_bad_row)
        items, eval_items, lines = train_and_eval(cfg, lambda src: load_ranked_dataset(src, self.tokenizer, **load))
        return items, eval_items, "\n".join(lines)

    def prepare_model(self, model: nn.Module) -> None:
        self.check_prefix_sharing(decoder_body(model))

    def collate(self, items: Sequence[TokenizedRanked]) -> dict[str, Any]:
        if self.share_prefix:  # each prompt once, its K responses after it (bridle.data.shared_prefix)
            batch = shared_prefix_collate([it.responses for it in items], pad_id=self.tokenizer.pad_token_id)
            batch.update(ranked_grid(items), num_tokens=sum(len(e.input_ids) for it in items for e in it.responses))
        else:
            batch = ranked_collate(items, pad_id=self.tokenizer.pad_token_id)
        batch["weight"] = len(items)
        return batch

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        if "sources" in batch:
            sums, counts = sequence_sums(shared_prefix_token_logps(model, batch)[0], batch)
        else:
            selected = causal_lm_logps(model, batch["input_ids"], batch["labels"],
                                       attention_mask=batch["attention_mask"])
            sums, counts = selected.row_sums(), selected.mask.sum(-1)
        grid = batch["scores"].shape
        rows, cols = batch["slot_row"], batch["slot_col"]
        logps = sums.new_zeros(grid).index_put((rows, cols), sums)
        lengths = batch["scores"].new_zeros(grid).index_put((rows, cols), counts.float())
        loss, metrics = objectives.rrhf(logps, lengths, batch["scores"], batch["valid"],
                                        sft_weight=self.config.sft_weight)
        return StepOutput(loss, metrics)
