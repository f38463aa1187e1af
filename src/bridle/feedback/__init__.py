"""Everything that turns responses into scores or preferences: reward models (rule functions and judges later)."""

from bridle.feedback.reward_model import RewardModel

__all__ = ["RewardModel"]
