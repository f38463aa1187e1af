"""FSDP on CPU processes (gloo): torch's FSDP2 (`fully_shard`) applied by the engine where accelerate declines to.

accelerate 1.16 turns an FSDP config on only for GPU-type backends; on CPU it would train plain data parallel. torch's
FSDP2 itself runs over gloo, so when the launch asks for FSDP (ACCELERATE_USE_FSDP=true) and its processes are CPU
ones, the engine shards each decoder layer and then the root with `fully_shard` before the optimizer is built, and
accelerate prepares only the optimizer and schedule (no DDP wrapper). Parameters, gradients and AdamW states are
then DTensor shards; each micro-batch's backward reduce-scatters (averaging over processes, as DDP does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from bridle.engine.distributed import gather_lists
from bridle.engine.step_unit import MODEL_PREFIX, StepUnit


def layers_to_shard(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks: modules whose class a HF model lists in `_no_split_modules` (its decoder
    layers), outermost first; each becomes one FSDP unit (all-gathered as it runs)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names and m is not model]


def shard_model(model: nn.Module, step: Callable[[nn.Module, dict[str, Any]], Any]) -> StepUnit:
    """`fully_shard` each decoder layer of `model` in place, then the root: a `StepUnit` around it holding the rest
    (embeddings, final norm, head), all-gathered around the whole step. Returns the unit; run each step through it."""
    from torch.distributed.fsdp import fully_shard

    for layer in layers_to_shard(model):
        fully_shard(layer)
    unit = StepUnit(model, step)
    fully_shard(unit)
    return unit


def local_numel(model: nn.Module) -> tuple[int, int]:
    """(values this process holds, values of the whole model) over the model's parameters (DTensor shards count
    their local part)."""
    from torch.distributed.tensor import DTensor

    local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())
    return local, sum(p.numel() for p in model.parameters())


def sharding_note(unit: nn.Module) -> str:
    """A line for the run's output (every process must call it): how many parameter values each process holds."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    local, total = local_numel(unit)
    every = gather_lists([local])
    units = sum(isinstance(m, FSDPModule) for m in unit.modules())
    dtensors = all(isinstance(p, DTensor) for p in unit.parameters())
    return (f"FSDP on CPU (torch fully_shard over gloo, {units} units, parameters are DTensors: {dtensors}): "
            f"processes hold {' + '.join(str(n) for n in every)} of {total} parameter values")


def full_tensor(value: Tensor) -> Tensor:
    """A DTensor's whole value (a norm computed over shards); any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def gathered_state_dict(unit: StepUnit, *, everywhere: bool = False) -> dict[str, Tensor]:
    """The whole model's weights under the model's own names: on the main process only (CPU tensors; an empty dict
    on the others), or with `everywhere` on every process. Every process must call it (each layer's shards are
    all-gathered)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(unit, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere))
    if not everywhere and torch.distributed.get_rank() != 0:
        return {}
    return {k.removeprefix(MODEL_PREFIX): v for k, v in state.items()}


def unsharded_copy(model: nn.Module) -> nn.Module:
    """A plain copy of `model` made before it is sharded, without gradients: what an online method samples, scores
    and evaluates with under FSDP (a forward outside the step unit would meet sharded root parameters, and each
    process samples a different number of tokens, so the layers' all-gathers would not pair up). It costs one
    full copy of the weights per process, as a colocated rollout engine does."""
    import copy

    clone = copy.deepcopy(model)
    clone.requires_grad_(False)
    return clone


def load_full_weights(unit: StepUnit, target: nn.Module) -> None:
    """Copy the sharded unit's current weights, whole, into `target` (its unsharded copy) on every process.
    Every process must call it: each shard is all-gathered."""
    target.load_state_dict(gathered_state_dict(unit, everywhere=True))
