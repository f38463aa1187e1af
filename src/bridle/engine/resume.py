"""Resumable checkpoints of a run: what the engine writes every --save-every steps, and how --resume finds, checks
and loads the newest one. The files are bridle.engine.checkpoint's; under FSDP the shards are gathered to and
scattered from them by bridle.engine.sharded_state. A mixin of `Engine`, whose state (model, optimizer, schedule,
step, the objective) it reads and restores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridle.engine.checkpoint import STATE_FILE, load_checkpoint, save_checkpoint, trainable_state
from bridle.engine.rundir import math_config, resumable_checkpoint, run_fingerprint
from bridle.engine.sharded_state import BY_NAME, gather_training_state, load_sharded_checkpoint
from bridle.errors import BridleError


class Resumable:
    """`save_checkpoint`, `restore` and the checks between them, for `Engine`."""

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    def save_checkpoint(self) -> None:
        """A resumable checkpoint, written by the main process. Under FSDP every process first hands its shards of
        the weights and AdamW states over (bridle.engine.sharded_state): the files are those of an unsharded run,
        with the optimizer state keyed by parameter name."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if self.sharded == "FSDP":
            weights, optimizer_state = gather_training_state(self.model, self.optimizer.optimizer)
        elif acc.is_main_process:
            weights, optimizer_state = trainable_state(self.unwrapped_model), self.optimizer.state_dict()
        if acc.is_main_process:
            state: dict[str, Any] = {"total_steps": self.total_steps, "fingerprint": self.fingerprint,
                                     "config": math_config(self.config, self.method_name),
                                     "nonfinite": [self.nonfinite_steps, self._nonfinite_in_a_row],
                                     "stopping": self.stopping.state_dict(), "num_processes": acc.num_processes,
                                     "sharded": self.sharded,
                                     "optimizer_keys": BY_NAME if self.sharded == "FSDP" else "numbers"}
            if hasattr(self.objective, "state_dict"):
                state["objective"] = self.objective.state_dict()
            save_checkpoint(self.checkpoint_dir, step=self.step, weights=weights, optimizer_state=optimizer_state,
                            scheduler=self.scheduler, state=state, keep=self.config.keep_checkpoints)

    @property
    def method_name(self) -> str:
        return getattr(self.objective, "name", "") or type(self.objective).__name__

    @property
    def fingerprint(self) -> str:
        """The run's config fingerprint (bridle.engine.rundir): its checkpoints carry it, resume requires it."""
        return run_fingerprint(self.config, self.method_name)

    def restore(self) -> Path | None:
        """With --resume yes|auto: load the newest checkpoint of this run, by step (weights, optimizer, schedule,
        RNG, the objective's state) and set `step` to its step. A checkpoint of another config (another fingerprint)
        is never loaded: BridleError. Returns the checkpoint loaded, if any."""
        if self.config.resume not in ("yes", "auto"):
            return None
        found = resumable_checkpoint(self.checkpoint_dir, self.config, self.method_name,
                                     required=self.config.resume == "yes")
        if found is None:
            return None
        self.check_resumable(found, json.loads((found / STATE_FILE).read_text()))
        if self.sharded == "FSDP":
            state = load_sharded_checkpoint(found, self.model, self.optimizer.optimizer, self.scheduler)
        else:
            state = load_checkpoint(found, model=self.unwrapped_model, optimizer=self.optimizer,
                                    scheduler=self.scheduler)
        self.step = int(state["step"])
        if "objective" in state and hasattr(self.objective, "load_state_dict"):
            self.objective.load_state_dict(state["objective"])
        self.nonfinite_steps, self._nonfinite_in_a_row = state.get("nonfinite", (0, 0))  # skips count on
        self.stopping.load_state_dict(state.get("stopping", {}))  # patience counts on
        return found

    def check_resumable(self, found: Path, saved: dict[str, Any]) -> None:
        """Refuse, before loading anything, a checkpoint this run cannot continue exactly: another number of
        processes (the global batch would differ), another layout of the optimizer state (sharded or not), or a
        step past this run's budget."""
        processes, strategy = int(saved.get("num_processes", 1)), saved.get("sharded")
        if processes != self.accelerator.num_processes:
            raise BridleError(f"--resume: {found} was written by a run of {processes} processes; this one has "
                              f"{self.accelerator.num_processes}. Resume with --num-processes {processes} (the "
                              "global batch is --batch-size × processes × --grad-accum), or start a new run.")
        if strategy != self.sharded:
            written = f"an {strategy} run" if strategy else "an unsharded run"
            now = f"{self.sharded}" if self.sharded else "unsharded (data parallel)"
            raise BridleError(f"--resume: {found} was written by {written}; this one is {now}, and the two keep "
                              "their optimizer state differently. Resume with the --accelerate-config that wrote it.")
        if int(saved["step"]) > self.total_steps:
            raise BridleError(f"--resume: {found} is at step {saved['step']}, past this run's {self.total_steps} "
                              "steps.")
