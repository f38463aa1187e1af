"""Everything that turns responses into scores or preferences: reward models and rule functions (judges later)."""

from bridle.feedback.reward_model import RewardModel
from bridle.feedback.sources import CombinedReward, RewardBatch, RewardSource, Sample, build_reward

__all__ = ["CombinedReward", "RewardBatch", "RewardModel", "RewardSource", "Sample", "build_reward"]
