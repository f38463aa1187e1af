"""The one training loop. Every method plugs in an `Objective` (how to collate a micro-batch and compute its loss);
the loop owns everything else: order, accumulation, precision, clipping, schedule, eval, logging, checkpoints."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import Tensor, nn

from bridle.config import TrainConfig
from bridle.engine.batches import BatchPlan, iterate_eval
from bridle.engine.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from bridle.engine.logging import RunLog, format_metrics, parse_trackers
from bridle.engine.schedule import make_scheduler

FAULT_ENV = "BRIDLE_FAULT_KILL_AT_STEP"  # test hook: SIGKILL this process right after that optimizer step


@dataclass
class StepOutput:
    """What an objective returns for one micro-batch: its mean loss and metrics to log (means over the batch)."""

    loss: Tensor
    metrics: dict[str, Tensor | float] = field(default_factory=dict)


class Objective(Protocol):
    """What the engine needs from a method. `collate` must put two scalars in the batch: "weight", how many units
    the loss averages over (loss tokens for SFT, pairs for DPO), so accumulation weights micro-batches exactly as one
    big batch would; and "num_tokens", real (non-pad) tokens, for throughput."""

    def collate(self, items: Sequence[Any]) -> dict[str, Any]: ...

    def step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput: ...


class OnlineObjective(Objective, Protocol):
    """An objective that makes its own training items as it goes (PPO, GRPO, RLOO, RAFT): before each optimizer
    step the engine asks it for that step's items (it may sample new responses from the current policy first) and
    the metrics of that work; it says how many steps the run has, evaluates itself, and checkpoints its state."""

    def planned_steps(self) -> int: ...

    def step_items(self, model: nn.Module, step: int) -> tuple[Sequence[Any], dict[str, float]]: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def is_online(objective: Objective) -> bool:
    return callable(getattr(objective, "step_items", None))


@dataclass
class TrainResult:
    steps: int
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    tokens_per_second: float
    seconds: float


def _to_float(value: Tensor | float) -> float:
    return float(value.detach().float().item()) if isinstance(value, Tensor) else float(value)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


class Engine:
    def __init__(self, config: TrainConfig, model: nn.Module, objective: Objective, train_items: Sequence[Any],
                 eval_items: Sequence[Any] | None = None) -> None:
        self.config, self.objective = config, objective
        self.train_items, self.eval_items = train_items, list(eval_items or [])
        self.output_dir = Path(config.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # One process may run several stages (a pipeline) with different precisions: the process-wide state
        # (devices, ranks) stays, the per-run state is rebuilt.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            mixed_precision="bf16" if config.precision == "bf16" else "no",
            log_with=parse_trackers(config.report_to) or None, project_dir=str(self.output_dir))
        self.plan = BatchPlan(len(train_items), config.batch_size, seed=config.seed,
                              process_index=self.accelerator.process_index,
                              num_processes=self.accelerator.num_processes)
        self.total_steps = self._total_steps()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                      betas=(config.adam_beta1, config.adam_beta2))
        scheduler = make_scheduler(optimizer, total_steps=self.total_steps, kind=config.lr_schedule,
                                   warmup_steps=round(config.warmup_ratio * self.total_steps))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.params = params

    def _total_steps(self) -> int:
        if self.config.max_steps > 0:
            return self.config.max_steps
        if is_online(self.objective):
            return max(1, self.objective.planned_steps())
        return max(1, math.ceil(self.plan.per_epoch * self.config.epochs / self.config.grad_accum))

    # -- one optimizer step ------------------------------------------------------------------------------------
    def _train_step(self, step: int) -> tuple[dict[str, float], int]:
        """Forward/backward over `grad_accum` micro-batches, then clip and step. Returns (metrics, tokens)."""
        sums: dict[str, float] = {}
        if is_online(self.objective):  # items made now from the current policy, split into micro-batches
            items, sums = self.objective.step_items(self.accelerator.unwrap_model(self.model), step)
            size = self.config.batch_size
            batches = [self.objective.collate(items[i:i + size]) for i in range(0, len(items), size)]
            if not items:
                raise RuntimeError(f"step {step}: the online objective gave no items to train on")
        else:
            first = step * self.config.grad_accum
            batches = [self.objective.collate([self.train_items[i] for i in self.plan.indices(m)])
                       for m in range(first, first + self.config.grad_accum)]
        batches = [b for b in batches if b["weight"] > 0]
        weights = torch.tensor([float(b["weight"]) for b in batches], device=self.accelerator.device)
        total = self.accelerator.reduce(weights.sum(), reduction="sum").clamp(min=1e-8)
        scale = self.accelerator.num_processes / total  # DDP averages gradients over processes
        sums = dict(sums)
        tokens = 0
        self.model.train()
        for i, batch in enumerate(batches):
            batch = _to_device(batch, self.accelerator.device)
            last = i == len(batches) - 1
            sync = self.accelerator.no_sync(self.model) if not last else contextlib.nullcontext()
            with sync, self.accelerator.autocast():
                out = self.objective.step(self.model, batch)
                self.accelerator.backward(out.loss * weights[i] * scale)
            share = float(weights[i] / weights.sum())
            sums["loss"] = sums.get("loss", 0.0) + share * _to_float(out.loss)
            for key, value in out.metrics.items():
                sums[key] = sums.get(key, 0.0) + share * _to_float(value)
            tokens += int(batch["num_tokens"])
        if self.config.max_grad_norm > 0:
            norm = self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
            sums["grad_norm"] = _to_float(norm)
        sums["lr"] = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums, tokens

    def _trainer_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"total_steps": self.total_steps}
        if is_online(self.objective):
            state["objective"] = self.objective.state_dict()
        return state

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Weighted means over the eval set, as if it were one batch (online objectives evaluate themselves)."""
        if not self.eval_items:
            return {}
        if is_online(self.objective):
            metrics = self.objective.evaluate(self.accelerator.unwrap_model(self.model))
            self.model.train()
            return {f"eval/{k}": v for k, v in metrics.items()}
        self.model.eval()
        totals: dict[str, float] = {}
        weight_sum = 0.0
        for idx in iterate_eval(len(self.eval_items), self.config.batch_size):
            batch = _to_device(self.objective.collate([self.eval_items[i] for i in idx]), self.accelerator.device)
            weight = float(batch["weight"])
            if weight <= 0:
                continue
            with self.accelerator.autocast():
                out = self.objective.step(self.model, batch)
            weight_sum += weight
            for key, value in {"loss": out.loss, **out.metrics}.items():
                totals[key] = totals.get(key, 0.0) + weight * _to_float(value)
        self.model.train()
        return {f"eval/{k}": v / max(weight_sum, 1e-8) for k, v in totals.items()}

    # -- the run -----------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        config, acc = self.config, self.accelerator
        ckpt_dir = self.output_dir / "checkpoints"
        start = 0
        if config.resume:
            found = list_checkpoints(ckpt_dir)
            if found:
                state = load_checkpoint(found[-1], model=acc.unwrap_model(self.model), optimizer=self.optimizer,
                                        scheduler=self.scheduler)
                start = int(state["step"])
                if is_online(self.objective) and "objective" in state:
                    self.objective.load_state_dict(state["objective"])
        if acc.log_with:
            acc.init_trackers("bridle", config={k: v for k, v in vars(config).items()
                                                if isinstance(v, (int, float, str, bool))})
        kill_at = int(os.environ.get(FAULT_ENV, "0") or 0)
        train_metrics: dict[str, float] = {}
        eval_metrics: dict[str, float] = {}
        window_tokens, window_start = 0, time.perf_counter()
        run_tokens, run_seconds = 0, 0.0
        with RunLog(self.output_dir, accelerator=acc, total_steps=self.total_steps,
                    show_progress=config.progress, resume_step=start, is_main=acc.is_main_process) as log:
            if start:
                log.info(f"resumed from {found[-1]} at step {start}/{self.total_steps}")
            elif config.eval_on_start and self.eval_items:
                log.log(0, self.evaluate())
            for step in range(start, self.total_steps):
                t0 = time.perf_counter()
                metrics, tokens = self._train_step(step)
                elapsed = time.perf_counter() - t0
                run_tokens, run_seconds = run_tokens + tokens, run_seconds + elapsed
                window_tokens += tokens
                done = step + 1
                train_metrics = metrics
                log.advance(done, f"loss {metrics['loss']:.4f}  {run_tokens / max(run_seconds, 1e-9):,.0f} tok/s")
                if done % config.log_every == 0 or done == self.total_steps:
                    now = time.perf_counter()
                    metrics["tokens_per_s"] = window_tokens / max(now - window_start, 1e-9)
                    if not is_online(self.objective):  # online objectives report their own pass over the prompts
                        metrics["epoch"] = done * config.grad_accum / self.plan.per_epoch
                    log.log(done, metrics)
                    window_tokens, window_start = 0, time.perf_counter()
                if config.eval_every and done % config.eval_every == 0 and done != self.total_steps:
                    eval_metrics = self.evaluate()
                    if eval_metrics:
                        log.log(done, eval_metrics)
                if config.save_every and done % config.save_every == 0 and done != self.total_steps:
                    acc.wait_for_everyone()
                    if acc.is_main_process:
                        save_checkpoint(ckpt_dir, step=done, model=acc.unwrap_model(self.model),
                                        optimizer=self.optimizer, scheduler=self.scheduler,
                                        state=self._trainer_state(), keep=config.keep_checkpoints)
                if kill_at and done == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            eval_metrics = self.evaluate()
            if eval_metrics:
                log.log(self.total_steps, eval_metrics)
                log.info(format_metrics(eval_metrics))
        acc.end_training()
        return TrainResult(self.total_steps, train_metrics, eval_metrics,
                           run_tokens / max(run_seconds, 1e-9), run_seconds)

