"""What the preference methods share: the config keys of every pairwise method (DPO family, SimPO, ORPO) and KTO."""

from __future__ import annotations

from dataclasses import dataclass

from bridle.config import TrainConfig, option
from bridle.errors import ConfigError
from bridle.methods.sharing import prefix_sharing_option


@dataclass
class PreferenceConfig(TrainConfig):
    """Keys shared by every pairwise preference method (and KTO)."""

    lr: float = option(1e-6, "peak learning rate (AdamW); DPO-style losses want small ones for full fine-tuning")
    beta: float = option(0.1, "β: inverse temperature of the implicit reward (higher = stay closer to the reference)")
    max_prompt_length: int = option(0, "prompt tokens kept when a pair is too long (from the end); 0 = max_length/2")
    padding_free: bool = option(False, "pack the 2B sequences of a batch into one row (position_ids, no padding)")
    prefix_sharing: bool = prefix_sharing_option()
    reference_model: str = option("", "reference model; empty = the policy's starting weights (LoRA: adapter off)")
    reference_cache: str = option("", "folder for cached reference log-probs; empty = <bridle cache>/reference; "
                                      "none = do not cache")


def check_positive(config: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"key {name!r} must be > 0; got {getattr(config, name)}.")
