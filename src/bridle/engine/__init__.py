"""The single training loop shared by every method (see loop.Engine)."""

from bridle.engine.loop import Engine, Objective, StepOutput, TrainResult

__all__ = ["Engine", "Objective", "StepOutput", "TrainResult"]
