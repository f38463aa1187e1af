"""What the engine needs to know about the processes of a distributed launch (torchrun / `accelerate launch`), and
the cross-process reductions it does on top of accelerate's: weighted metric means and gathering Python objects.

Bridle has no cluster layer of its own: the processes, their ranks and the collectives are torch.distributed's,
set up by accelerate. On a machine without a GPU the processes talk over gloo (accelerate's MULTI_CPU)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch


def world_size() -> int:
    """Processes of the launch this process belongs to (WORLD_SIZE, as torchrun and accelerate set it); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_rank() -> int:
    """This process's global rank (RANK); 0 when not launched."""
    return int(os.environ.get("RANK", "0") or 0)


def launched() -> bool:
    """Whether this process was started by a distributed launcher (it must not launch again)."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ


def use_cpu_backend() -> bool:
    """Whether accelerate must be told `cpu=True`: several processes and no CUDA device. Accelerate sets up
    torch.distributed over gloo (MULTI_CPU) only then; without it each process would think it runs alone."""
    return world_size() > 1 and not torch.cuda.is_available()


def reduce_weighted_means(accelerator: Any, sums: dict[str, float], total_weight: float) -> dict[str, float]:
    """Means over every process of metrics each process summed as Σ weight·value (`sums`), divided by the weight of
    all processes together (`total_weight`, already reduced): the value one process would log for the whole batch.

    Every process must report the same keys (objectives do: their metrics do not depend on the batch's content);
    the reduction is one all-reduce of a vector in their order."""
    keys = list(sums)
    local = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        local = accelerator.reduce(local, reduction="sum")
    return {k: float(v) / max(total_weight, 1e-8) for k, v in zip(keys, local.tolist())}


def reduce_sum(accelerator: Any, value: float) -> float:
    """`value` summed over every process."""
    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(tensor, reduction="sum").item())


def gather_lists(items: Sequence[Any]) -> list[Any]:
    """Every process's `items` concatenated in rank order (a pickled all-gather; one process: a copy)."""
    if world_size() == 1 or not torch.distributed.is_initialized():
        return list(items)
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


def mean_over_processes(metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the processes (exact for means over equal shares); the main process's keys."""
    if world_size() == 1 or not torch.distributed.is_initialized():
        return dict(metrics)
    every = gather_lists([metrics])
    keys = [k for k in every[0] if all(k in m for m in every)]
    return {k: sum(float(m[k]) for m in every) / len(every) for k in keys}
