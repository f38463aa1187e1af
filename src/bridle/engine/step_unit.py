"""The module the distributed wrappers wrap: the model plus the objective's step as its forward.

DDP synchronizes gradients only for the work done inside its wrapper's forward, and an FSDP root unit all-gathers
its parameters only around its own forward. Objectives reach into the model instead of calling its forward (the
decoder, then the LM head's weight in chunks; a reward model's body and score head; PPO's policy and value
attributes), so a wrapper around the model itself would miss that work: each process would train its own model.
Wrapping this unit instead puts the whole step inside the wrapper's forward, for every method alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

MODEL_PREFIX = "model."  # the unit's name for the model: the start of every key of the unit's state dict


class StepUnit(nn.Module):
    """`model` (a submodule, so the wrapper sees its parameters) and `step(model, batch) -> StepOutput`, run as
    `forward(batch) -> (loss, metrics)`. The step always receives the plain model, never a wrapper."""

    def __init__(self, model: nn.Module, step: Callable[[nn.Module, dict[str, Any]], Any]) -> None:
        super().__init__()
        self.model, self._step = model, step

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        out = self._step(self.model, batch)
        return out.loss, dict(out.metrics)
