"""The single training loop shared by every method (see loop.Engine)."""

from bridle.engine.loop import Engine, Objective, OnlineObjective, StepOutput, TrainResult, is_online

__all__ = ["Engine", "Objective", "OnlineObjective", "StepOutput", "TrainResult", "is_online"]
