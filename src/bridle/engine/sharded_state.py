"""Resumable checkpoints of a sharded (FSDP) run, in the same files as an unsharded one.

Each process holds only its shard of the weights and of AdamW's moments. To save, torch's distributed state-dict
API gathers them whole onto the main process (CPU), which writes the usual checkpoint: the trainable weights under
their plain names, and the optimizer state keyed by parameter name (an unsharded run keys it by parameter number:
the trainer state records which, as `optimizer_keys`). To resume, every process reads the checkpoint and the same
API scatters each tensor back into that process's shard. The files do not depend on how the model was cut into
shards; a run resumes them with the same number of processes and the same strategy (`Resumable.check_resumable`
refuses others), and the test compares the resumed run with one that was never interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from bridle.engine.checkpoint import load_schedule_and_rng
from bridle.engine.step_unit import MODEL_PREFIX

BY_NAME = "names"  # `optimizer_keys` of a checkpoint whose optimizer state is keyed by parameter name


def gather_training_state(unit: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], Any]:
    """(the model's trainable weights by plain name, the optimizer's state keyed by parameter name), whole, on the
    main process; two empty dicts on the others. Every process must call it: the shards are all-gathered."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    weights, optimizer_state = get_state_dict(
        unit, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if torch.distributed.get_rank() != 0:
        return {}, {}
    trainable = {name for name, p in unit.named_parameters() if p.requires_grad}
    kept = {name.removeprefix(MODEL_PREFIX): value.detach().contiguous()
            for name, value in weights.items() if name in trainable}
    return kept, optimizer_state


def scatter_training_state(unit: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, Tensor],
                           optimizer_state: Any) -> None:
    """Load a checkpoint's whole weights (plain names; frozen ones stay as the model has them) and name-keyed
    optimizer state into this process's shards. Every process must call it, each with the whole checkpoint."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    params = {name for name, _ in unit.named_parameters()}
    unknown = [name for name in weights if MODEL_PREFIX + name not in params]
    if unknown:
        raise RuntimeError(f"the checkpoint does not match the model (unknown weights such as {unknown[0]!r})")
    set_state_dict(unit, optimizer, model_state_dict={MODEL_PREFIX + k: v for k, v in weights.items()},
                   optim_state_dict=optimizer_state,
                   options=StateDictOptions(full_state_dict=True, strict=False))


def load_sharded_checkpoint(path: Path, unit: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
                            ) -> dict[str, Any]:
    """Restore a sharded run from checkpoint `path` (each process its shards, its schedule and the saved RNG);
    returns the saved trainer state."""
    weights = load_file(str(path / "model.safetensors"))
    scatter_training_state(unit, optimizer, weights, torch.load(path / "optimizer.pt", weights_only=False))
    return load_schedule_and_rng(path, scheduler)
