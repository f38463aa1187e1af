"""Evaluation: reward-model accuracy with intervals, calibration and length baselines (win rates, Elo later)."""

from bridle.eval.rm import bootstrap_ci, calibration_error, evaluate_pairs, evaluate_reward_model

__all__ = ["bootstrap_ci", "calibration_error", "evaluate_pairs", "evaluate_reward_model"]
