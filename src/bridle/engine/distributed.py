"""What the engine needs to know about the processes of a distributed launch (torchrun / `accelerate launch`), and
the cross-process reductions it does on top of accelerate's: weighted metric means and gathering Python objects.

Bridle has no cluster layer of its own: the processes, their ranks and the collectives are torch.distributed's,
set up by accelerate. On a machine without a GPU the processes talk over gloo (accelerate's MULTI_CPU)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def world_size() -> int:
    """Processes of the launch this process belongs to (WORLD_SIZE, as torchrun and accelerate set it); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_rank() -> int:
    """This process's global rank (RANK); 0 when not launched."""
    return int(os.environ.get("RANK", "0") or 0)


def launched() -> bool:
    """Whether this process was started by a distributed launcher (it must not launch again)."""
    return "LOCAL_RANK" in os.environ or "WORLD_SIZE" in os.environ


def check_process_count(config: Any) -> None:
    """`num_processes` must be the launch's: a run that asks for N processes but was not launched in N (a recipe
    stage, a programmatic `run`, an `accelerate launch` of another size) is refused, not trained in another shape."""
    from bridle.errors import ConfigError

    wanted, running = int(getattr(config, "num_processes", 1)), world_size()
    if wanted > 1 and wanted != running:
        raise ConfigError(f"num_processes is {wanted}, but this run has {running} process(es). `bridle <method> "
                          "--num-processes N` launches them itself; under `accelerate launch` leave --num-processes "
                          "out (the launch sets it); recipe stages run in one process.")


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


def check_gradients_in_sync(accelerator: Any, grad_norm: float, method: str) -> None:
    """After the gradient all-reduce every process holds the same gradients, so the same norm. Different norms mean
    some work of the step ran outside the DDP wrapper's forward (the engine runs every step inside it, as the
    forward of its step unit: bridle.engine.step_unit), so DDP never synchronized it and each process would train
    its own model. A guard against that bug: the run stops at the first step instead."""
    if accelerator.num_processes == 1 or not math.isfinite(grad_norm):
        return
    norms = accelerator.gather(torch.tensor([grad_norm], dtype=torch.float64, device=accelerator.device)).tolist()
    if max(norms) - min(norms) > 1e-5 * max(1.0, max(norms)):
        from bridle.errors import BridleError

        shown = ", ".join(f"{n:.6g}" for n in norms)
        raise BridleError(f"bridle {method}: the {len(norms)} processes' gradients differ after the all-reduce "
                          f"(norms {shown}): part of its step ran outside the DDP wrapper's forward, so DDP did "
                          "not synchronize it. This is a bug in Bridle; train in one process (drop --num-processes) "
                          "until it is fixed.")


def global_mean(values: Tensor, *, counted: bool = True) -> Tensor:
    """The mean of `values` over every process's micro-batch of this step, each process passing its own (a batch
    statistic of the global batch, such as KTO's KL estimate). A stand-in batch of weight 0 passes
    `counted=False` and adds nothing. One all-reduce, so every process must call it; alone, the plain mean."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return values.mean()
    total = torch.stack([values.detach().sum(), values.new_tensor(float(values.numel()))]) * float(counted)
    torch.distributed.all_reduce(total)
    return total[0] / total[1].clamp(min=1)


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


def sharded_strategy(accelerator: Any) -> str | None:
    """"FSDP" or "DeepSpeed" when the model's training state is sharded over the processes; None for DDP / alone."""
    name = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()
    return {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed"}.get(name)


def cpu_fsdp_wanted(accelerator: Any) -> bool:
    """Whether the launch asks for FSDP, runs several processes, and accelerate left them plain CPU data parallel
    (MULTI_CPU): then the engine shards the model itself."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    name = str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)).upper()
    return asked and accelerator.num_processes > 1 and name == "MULTI_CPU"


def check_strategy_took(accelerator: Any) -> None:
    """An accelerate config that asks for FSDP or DeepSpeed on processes where neither accelerate nor Bridle runs
    it is refused instead of quietly training unsharded. FSDP on several CPU processes runs: accelerate keeps them
    plain data parallel over gloo, and the engine shards the model itself with torch's FSDP2 (`cpu_fsdp_wanted`,
    bridle.engine.fsdp_cpu). DeepSpeed on CPU and FSDP in one process are refused."""
    from bridle.errors import ConfigError

    asked = [name for name, env in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
             if os.environ.get(env, "false").lower() == "true"]
    if asked and sharded_strategy(accelerator) is None and not (asked == ["FSDP"] and cpu_fsdp_wanted(accelerator)):
        raise ConfigError(f"--accelerate-config asks for {asked[0]}, but accelerate runs it only on GPUs; these "
                          f"processes ({accelerator.distributed_type}) would train plain data parallel. On CPU use "
                          "--num-processes N without --accelerate-config (or configs/accelerate/ddp.yaml); FSDP "
                          "(configs/accelerate/fsdp.yaml) runs on CPU with --num-processes 2 or more.")


def check_sharded_config(config: Any, strategy: str) -> None:
    """What Bridle does not yet do under a sharded strategy, refused before the first step with what to do."""
    from bridle.errors import ConfigError

    if strategy == "DeepSpeed" and (config.save_every or config.resume != "no"):
        raise ConfigError("--save-every / --resume under DeepSpeed: Bridle gathers a sharded run's checkpoint "
                          "with torch's state-dict API, which covers FSDP, not DeepSpeed's engine. Train without "
                          "them (the final model is still saved), or use FSDP (configs/accelerate/fsdp.yaml).")
    if strategy == "DeepSpeed" and config.grad_accum > 1:
        raise ConfigError("--grad-accum under DeepSpeed: DeepSpeed accumulates itself (gradient_accumulation_steps "
                          "in the accelerate config) and Bridle's accumulation would bypass it; pass --grad-accum 1 "
                          "and set gradient_accumulation_steps there.")
