"""Resumable checkpoints, written atomically: everything goes into `step-N.tmp`, then one rename publishes it, so
a process killed mid-write leaves either the old checkpoint set or the new one, never half of one."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

STATE_FILE = "trainer_state.json"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights training changes (all of them, or only the adapters). Frozen ones come back from the model."""
    return {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, *, step: int, weights: dict[str, torch.Tensor], optimizer_state: Any,
                    scheduler: Any, state: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` under `directory` (`weights`: the trainable ones, `trainable_state`; the optimizer's
    state dict), then prune: of the checkpoints of this run (those with the same `state["fingerprint"]`), keep the
    newest `keep` by step, always including the one just written. Checkpoints of other runs are neither counted nor
    deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step-{step:07d}"
    tmp = directory / f"step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, str(tmp / "model.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=1))
    for path in tmp.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoints_to_prune(directory, final, keep=keep, fingerprint=state.get("fingerprint")):
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints_to_prune(directory: Path, written: Path, *, keep: int, fingerprint: str | None) -> list[Path]:
    """After writing `written`: this run's checkpoints beyond the newest `keep` (by step), and any of this run with a
    later step than `written` (left by an earlier attempt: they are not on this run's path). Never `written`."""
    if keep <= 0:
        return []
    step = checkpoint_step(written.name)
    ours = [p for p in list_checkpoints(directory, fingerprint=fingerprint) if p != written]
    later = [p for p in ours if (checkpoint_step(p.name) or 0) > (step or 0)]
    earlier = [p for p in ours if p not in later]
    return later + earlier[:max(0, len(earlier) - (keep - 1))]


def checkpoint_step(name: str) -> int | None:
    """The step in a checkpoint directory's name (`step-0000012` → 12); None for other names."""
    match = re.fullmatch(r"step-(\d+)", name)
    return int(match.group(1)) if match else None


def list_checkpoints(directory: Path, *, fingerprint: str | None = None) -> list[Path]:
    """Complete checkpoints, oldest first by step number (not by name). Leftover `.tmp` directories of a killed write
    are ignored. With `fingerprint`: only the checkpoints of that run."""
    if not directory.is_dir():
        return []
    done = [p for p in directory.iterdir() if p.is_dir() and checkpoint_step(p.name) is not None
            and (p / STATE_FILE).is_file()]
    if fingerprint is not None:
        done = [p for p in done if _fingerprint(p) == fingerprint]
    return sorted(done, key=lambda p: (checkpoint_step(p.name), p.name))


def _fingerprint(path: Path) -> str | None:
    try:
        return json.loads((path / STATE_FILE).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def load_checkpoint(path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
                    ) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from `path`; returns the saved trainer state."""
    weights = load_file(str(path / "model.safetensors"))
    params = dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        raise RuntimeError(f"checkpoint {path} does not match the model (unknown weights such as {missing[0]!r})")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    return load_schedule_and_rng(path, scheduler)


def load_schedule_and_rng(path: Path, scheduler: Any) -> dict[str, Any]:
    """Restore the schedule and the RNG from checkpoint `path`; returns its trainer state (weights and optimizer
    are the caller's: `load_checkpoint`, or bridle.engine.sharded_state for a sharded model)."""
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / STATE_FILE).read_text())
