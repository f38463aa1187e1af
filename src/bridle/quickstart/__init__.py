"""`bridle quickstart`: SFT → RM → PPO and SFT → DPO on the embedded model with data written by the project, then
a before/after evaluation and report.html."""

from bridle.quickstart.pipeline import run_quickstart

__all__ = ["run_quickstart"]
