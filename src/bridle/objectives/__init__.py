"""One pure loss function per method. Each returns (loss, metrics) and touches no optimizer, file or model."""

from bridle.objectives.bradley_terry import bradley_terry
from bridle.objectives.kto import kto
from bridle.objectives.ppo import grpo, ppo_policy, ppo_value
from bridle.objectives.preference import dpo, hinge, ipo, orpo, robust_dpo, simpo
from bridle.objectives.rrhf import rrhf
from bridle.objectives.sft import sft

__all__ = ["bradley_terry", "dpo", "grpo", "hinge", "ipo", "kto", "orpo", "ppo_policy", "ppo_value", "robust_dpo",
           "rrhf", "sft", "simpo"]
