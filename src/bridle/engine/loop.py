"""The one training loop. Every method plugs in an `Objective` (how to collate a micro-batch and compute its loss);
the engine owns everything else: order, accumulation, precision, clipping, schedule, eval, logging, checkpoints.
Online objectives (PPO, GRPO, ...) sample their own items: they run their loop of rounds (`OnlineMethod.train`) and
hand each update to the engine's `optimizer_step` and `after_step`, the same two calls offline steps go through."""

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
from bridle.engine.distributed import (
    check_gradients_in_sync,
    check_sharded_config,
    check_strategy_took,
    cpu_fsdp_wanted,
    reduce_sum,
    reduce_weighted_means,
    sharded_strategy,
    use_cpu_backend,
)
from bridle.engine.fsdp_cpu import (
    full_tensor,
    gathered_state_dict,
    load_full_weights,
    shard_model,
    sharding_note,
    unsharded_copy,
)
from bridle.engine.logging import RunLog, console, format_metrics, parse_trackers
from bridle.engine.resume import Resumable
from bridle.engine.schedule import make_scheduler
from bridle.engine.step_unit import MODEL_PREFIX, StepUnit
from bridle.engine.stopping import Stopping
from bridle.errors import BridleError

FAULT_ENV = "BRIDLE_FAULT_KILL_AT_STEP"  # test hook: SIGKILL this process right after that optimizer step
SEEN_ENV = "BRIDLE_DEBUG_SEEN_ITEMS"  # test hook: a directory where each process appends the items it trained on


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
    """An objective that makes its own training items as it goes (PPO, GRPO, RLOO, RAFT). It owns its loop,
    `train(engine, start_step)`: rounds of sampling from the current policy, each followed by optimizer steps it
    hands to the engine (`engine.optimizer_step` then `engine.after_step`). It says how many steps the run has,
    evaluates itself, and checkpoints its state."""

    def planned_steps(self) -> int: ...

    def train(self, engine: Engine, start_step: int) -> None: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def is_online(objective: Objective) -> bool:
    """Whether the objective drives its own loop (it samples its training items from the policy as it trains)."""
    return callable(getattr(objective, "train", None)) and callable(getattr(objective, "planned_steps", None))


@dataclass
class TrainResult:
    steps: int
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    tokens_per_second: float
    seconds: float
    stopped_by: str | None = None  # the stop condition that ended the run before its step budget


def _to_float(value: Tensor | float) -> float:
    return float(value.detach().float().item()) if isinstance(value, Tensor) else float(value)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def record_seen(indices: Sequence[int], rank: int) -> None:
    """With BRIDLE_DEBUG_SEEN_ITEMS=DIR: append the training items' indices this process takes to DIR/rank-R.txt,
    one line per batch (a test counts them: every item once per epoch over all processes, none twice)."""
    directory = os.environ.get(SEEN_ENV)
    if directory:
        with open(Path(directory) / f"rank-{rank}.txt", "a") as handle:
            handle.write(" ".join(str(i) for i in indices) + "\n")


class Engine(Resumable):
    """One run: the model prepared with its optimizer and schedule, `optimizer_step` (accumulation, precision,
    clipping, schedule), `after_step` (progress, logging, eval, checkpoints) and `fit`, the loop over steps.

    `fit` runs offline objectives itself (the micro-batches of each step come from a seeded `BatchPlan`); an online
    objective runs its own loop of rounds and calls `optimizer_step` / `after_step` for each of its updates."""

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
            cpu=use_cpu_backend(),  # several processes without CUDA: torch.distributed over gloo
            mixed_precision="bf16" if config.precision == "bf16" else "no",
            log_with=parse_trackers(config.report_to) or None, project_dir=str(self.output_dir),
            # one schedule step per optimizer step: by default accelerate steps it once per process
            step_scheduler_with_optimizer=False)
        check_strategy_took(self.accelerator)
        # FSDP on CPU processes: accelerate leaves them plain data parallel, the engine shards the model itself
        self.cpu_fsdp = cpu_fsdp_wanted(self.accelerator)
        # FSDP / DeepSpeed on GPUs: untested here (no GPU), see scaling.md
        self.sharded = "FSDP" if self.cpu_fsdp else sharded_strategy(self.accelerator)
        if self.sharded:
            check_sharded_config(config, self.sharded)  # (FSDP checkpoints: bridle.engine.sharded_state)
        self.plan = BatchPlan(len(train_items), config.batch_size, seed=config.seed,
                              process_index=self.accelerator.process_index,
                              num_processes=self.accelerator.num_processes)
        self.total_steps = self._total_steps()
        # an online method samples, scores and evaluates outside the step: under FSDP with an unsharded copy
        self._rollout_copy = unsharded_copy(model) if self.cpu_fsdp and is_online(objective) else None
        # every step runs as the forward of one unit (model + step), the module the DDP / FSDP wrappers wrap
        if self.cpu_fsdp:  # before the optimizer: it must hold the sharded (DTensor) parameters
            unit = shard_model(model, objective.step)
            note = sharding_note(unit)  # every process takes part
            if self.accelerator.is_main_process:
                console.print(note, soft_wrap=True, markup=False)
        else:
            unit = StepUnit(model, objective.step)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                      betas=(config.adam_beta1, config.adam_beta2))
        scheduler = make_scheduler(optimizer, total_steps=self.total_steps, kind=config.lr_schedule,
                                   warmup_steps=round(config.warmup_ratio * self.total_steps))
        if self.cpu_fsdp:  # no DDP wrapper around the sharded unit: accelerate prepares the rest
            self.model: nn.Module = unit
            self.optimizer, self.scheduler = self.accelerator.prepare(optimizer, scheduler)
        else:  # DDP / DeepSpeed / GPU FSDP wrap the unit, so the whole step is inside their forward
            self.model, self.optimizer, self.scheduler = self.accelerator.prepare(unit, optimizer, scheduler)
        self.params = params
        self.step = 0  # optimizer steps done
        self.nonfinite_steps, self._nonfinite_in_a_row = 0, 0  # steps skipped for a NaN/inf loss or gradient
        self.run_tokens, self.run_seconds = 0, 0.0  # over this process's optimizer steps
        self.stopping = Stopping(config.stop_when, patience=config.patience, patience_metric=config.patience_metric,
                                 patience_mode=config.patience_mode)
        self.stopped_by: str | None = None

    def _total_steps(self) -> int:
        if self.config.max_steps > 0:
            return self.config.max_steps
        planned = getattr(self.objective, "planned_steps", None)  # objectives that make their own items count them
        if planned is not None:
            return max(1, planned())
        return max(1, math.ceil(self.plan.per_epoch * self.config.epochs / self.config.grad_accum))

    @property
    def unit(self) -> StepUnit:
        """The step unit under the accelerate / DDP / DeepSpeed wrappers."""
        return self.accelerator.unwrap_model(self.model)

    @property
    def unwrapped_model(self) -> nn.Module:
        """The model being trained, without the step unit and the wrappers (for sampling, evaluation and saving)."""
        return self.unit.model

    def rollout_model(self) -> nn.Module:
        """The model online methods sample, score and evaluate with, outside the training step: the trained model
        itself, or under FSDP an unsharded copy refreshed with its current weights (every process must call it
        then: the shards are all-gathered into each process's copy, as a rollout engine is refreshed each round)."""
        if self._rollout_copy is None:
            return self.unwrapped_model
        load_full_weights(self.unit, self._rollout_copy)
        return self._rollout_copy

    @property
    def finished(self) -> bool:
        """The step budget is spent, or a stop condition (--stop-when, --patience) ended the run early."""
        return self.step >= self.total_steps or self.stopped_by is not None

    # -- one optimizer step ------------------------------------------------------------------------------------
    def micro_batches(self, step: int) -> list[dict[str, Any]]:
        """The `grad_accum` collated micro-batches of offline step `step`, from the seeded batch plan."""
        first = step * self.config.grad_accum
        return [self._collate(self.plan.indices(m)) for m in range(first, first + self.config.grad_accum)]

    def _collate(self, indices: list[int]) -> dict[str, Any]:
        """A micro-batch of these items. A process whose share of the epoch's last (partial) batch is empty gets a
        stand-in of weight 0 instead: it still runs forward and backward, so the processes' gradient all-reduces
        stay paired, and adds nothing to the gradient or the metrics."""
        if indices:
            record_seen(indices, self.accelerator.process_index)
            return self.objective.collate([self.train_items[i] for i in indices])
        batch = self.objective.collate([self.train_items[0]])
        return {**batch, "weight": 0, "num_tokens": 0}

    def optimizer_step(self, batches: Sequence[dict[str, Any]], extra_metrics: dict[str, float] | None = None
                       ) -> tuple[dict[str, float], int]:
        """Forward/backward over the micro-batches, each weighted by its share of their total "weight" (so k
        micro-batches equal one big batch), then clip, step the optimizer and the schedule.

        A step whose loss or gradient norm is NaN/inf is skipped (`skip_nonfinite_step`): no optimizer or schedule
        step, gradients dropped; after `max_nonfinite_steps` such steps in a row the run stops.

        Returns (metrics: `extra_metrics` plus weighted means of the loss and the objective's metrics, grad_norm,
        lr, and nonfinite_steps once a step was skipped; real tokens seen)."""
        started = time.perf_counter()
        acc = self.accelerator
        batches = self._batches_to_run(batches)
        weights = torch.tensor([float(b["weight"]) for b in batches], device=acc.device)
        total = acc.reduce(weights.sum(), reduction="sum").clamp(min=1e-8)  # the weight of the whole global batch
        scale = acc.num_processes / total  # DDP and FSDP average gradients over processes: N / total undoes it
        sums: dict[str, float] = {}  # Σ weight · value over this process's micro-batches
        tokens = 0
        finite_loss = True
        self.model.train()
        for i, batch in enumerate(batches):
            batch = _to_device(batch, acc.device)
            last = i == len(batches) - 1
            # (CPU FSDP reduce-scatters every micro-batch's gradients into the shards: exact, one more collective)
            sync = acc.no_sync(self.model) if not last and not self.cpu_fsdp else contextlib.nullcontext()
            with sync, acc.autocast():
                out = self._run_step(batch)
                acc.backward(out.loss * weights[i] * scale)
            weight = float(weights[i])
            loss = _to_float(out.loss)
            finite_loss = finite_loss and (math.isfinite(loss) or weight == 0)
            for key, value in {"loss": loss, **out.metrics}.items():
                sums[key] = sums.get(key, 0.0) + (weight * _to_float(value) if weight else 0.0)
            tokens += int(batch["num_tokens"])
        tokens = int(reduce_sum(acc, tokens))  # every process's tokens: the run's throughput
        sums = {**(extra_metrics or {}), **reduce_weighted_means(acc, sums, float(total))}
        if self.config.max_grad_norm > 0:
            norm = self.accelerator.clip_grad_norm_(self.params, self.config.max_grad_norm)
        else:  # no clipping, but the norm is still checked (and logged)
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        sums["grad_norm"] = _to_float(full_tensor(norm))  # (a norm over DTensor shards is one too)
        if not self.sharded:  # (FSDP / DeepSpeed report the norm of their own shards)
            check_gradients_in_sync(acc, sums["grad_norm"], self.method_name)
        sums["lr"] = self.scheduler.get_last_lr()[0]
        if not self.skip_nonfinite_step(finite_loss, sums):
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.nonfinite_steps:
            sums["nonfinite_steps"] = self.nonfinite_steps
        self.run_tokens += tokens
        self.run_seconds += time.perf_counter() - started
        return sums, tokens

    def _run_step(self, batch: dict[str, Any]) -> StepOutput:
        """The objective's step on one micro-batch, as the forward of the (wrapped) step unit: DDP then all-reduces
        the gradients of everything the step touched; CPU FSDP gathers the root's embeddings and head around it."""
        loss, metrics = self.model(batch)
        return StepOutput(loss, metrics)

    def _batches_to_run(self, batches: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The micro-batches with weight (a batch whose loss averages over nothing adds nothing). With several
        processes one of weight 0 is kept when a process has none, so it joins the gradient all-reduce."""
        kept = [b for b in batches if b["weight"] > 0]
        if not kept and batches and self.accelerator.num_processes > 1:
            kept = [{**batches[0], "weight": 0, "num_tokens": 0}]
        return kept

    def skip_nonfinite_step(self, finite_loss: bool, metrics: dict[str, float]) -> bool:
        """Whether this step must be skipped because its loss or gradient norm is NaN/inf (on any process): then
        it is counted and warned about, and the `max_nonfinite_steps`-th in a row stops the run with a BridleError.

        A skipped step still counts as a step (its batches are used up) but neither the optimizer nor the schedule
        moves, as accelerate does for the steps fp16 loss scaling skips: the schedule then runs one step behind per
        skip, and the optimizer's moments never see the bad gradient."""
        bad_loss, bad_grad = not finite_loss, not math.isfinite(metrics["grad_norm"])
        flags = torch.tensor([float(bad_loss), float(bad_grad)], device=self.accelerator.device)
        bad_loss, bad_grad = (bool(f) for f in self.accelerator.reduce(flags, reduction="sum") > 0)
        if not (bad_loss or bad_grad):
            self._nonfinite_in_a_row = 0
            return False
        self.nonfinite_steps += 1
        self._nonfinite_in_a_row += 1
        step, limit = self.step + 1, self.config.max_nonfinite_steps
        what = " and ".join(w for w, bad in (("loss", bad_loss), ("gradient norm", bad_grad)) if bad)
        found = f"loss={metrics['loss']:.4g}, grad_norm={metrics['grad_norm']:.4g}"
        what = f"{what} {'are' if bad_loss and bad_grad else 'is'}"
        if self._nonfinite_in_a_row >= limit:
            raise BridleError(
                f"step {step}: the {what} not finite ({found}), {self._nonfinite_in_a_row} steps in a row: "
                f"stopping (max_nonfinite_steps = {limit}).\nTraining diverged or the data makes the loss "
                "undefined: lower --lr, set --max-grad-norm 1.0, try --precision fp32, or check the data. "
                "To tolerate more skipped steps, raise --max-nonfinite-steps.")
        message = (f"warning: step {step}: the {what} not finite ({found}); skipped the update "
                   f"({self._nonfinite_in_a_row} in a row, the run stops at {limit}: --max-nonfinite-steps)")
        if getattr(self, "_log", None) is not None:  # inside `fit`: through the run's progress display
            self._log.info(message)
        else:
            console.print(message, soft_wrap=True, markup=False)
        return True

    def after_step(self, metrics: dict[str, float], tokens: int) -> None:
        """Bookkeeping after each optimizer step: progress, then every N steps log, evaluate, checkpoint; and the
        test hook that kills the process at a chosen step."""
        config, log = self.config, self._log
        self.step += 1
        done = self.step
        self.train_metrics = metrics
        self._window_tokens += tokens
        log.advance(done, f"loss {metrics['loss']:.4f}  {self.run_tokens / max(self.run_seconds, 1e-9):,.0f} tok/s")
        if done % config.log_every == 0 or done == self.total_steps:
            now = time.perf_counter()
            metrics["tokens_per_s"] = self._window_tokens / max(now - self._window_start, 1e-9)
            log.log(done, metrics)
            self._window_tokens, self._window_start = 0, time.perf_counter()
        evaluated = None
        if config.eval_every and done % config.eval_every == 0 and done != self.total_steps:
            self.eval_metrics = evaluated = self.evaluate()
            if self.eval_metrics:
                log.log(done, self.eval_metrics)
        self.stopped_by = self.stopping.check(metrics, evaluated)
        if self.stopped_by is not None:
            if done % config.log_every and done != self.total_steps:  # the step that stopped it is in metrics.jsonl
                log.log(done, metrics)
            log.info(f"stopping at step {done}/{self.total_steps}: {self.stopped_by}")
        if config.save_every and done % config.save_every == 0 and done != self.total_steps and not self.finished:
            self.save_checkpoint()
        if self._kill_at and done == self._kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def full_state_dict(self) -> dict[str, Tensor] | None:
        """The whole model's weights gathered from a sharded run (every process must call it; the main process gets
        them), or None when the model is not sharded (the unwrapped model holds them)."""
        if not self.sharded:
            return None
        if self.cpu_fsdp:
            return gathered_state_dict(self.unit)
        state = self.accelerator.get_state_dict(self.model)
        return {k.removeprefix(MODEL_PREFIX): v for k, v in state.items()}

    def close(self) -> None:
        """After the run (and the final save): wait for every process, then end the distributed group.

        The DDP wrapper goes first. Its reducer holds the process group; were it the group's last holder, the group
        would be destroyed from the reducer's destructor with the GIL held, joining gloo's threads while one of them
        waits for the GIL: a rank that never exits (seen twice in 2-process runs). Destroyed by torch's own call,
        the group releases the GIL first."""
        self.accelerator.wait_for_everyone()
        self.model = self.unit  # (the unit itself holds no process group)
        self.accelerator.free_memory()  # the wrappers accelerate keeps, then a garbage collection
        self.accelerator.state.destroy_process_group()

    # -- evaluation ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Weighted means over the eval set, as if it were one batch (objectives with their own `evaluate`, such
        as the online ones, evaluate themselves)."""
        if not self.eval_items:
            return {}
        own = getattr(self.objective, "evaluate", None)
        if own is not None:
            metrics = own(self.rollout_model())
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
                out = self._run_step(batch)
            weight_sum += weight
            for key, value in {"loss": out.loss, **out.metrics}.items():
                totals[key] = totals.get(key, 0.0) + weight * _to_float(value)
        self.model.train()
        return {f"eval/{k}": v / max(weight_sum, 1e-8) for k, v in totals.items()}

    # -- the run -----------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        config, acc = self.config, self.accelerator
        resumed_from = self.restore()
        start = self.step
        if acc.log_with:
            acc.init_trackers("bridle", config={k: v for k, v in vars(config).items()
                                                if isinstance(v, (int, float, str, bool))})
        # the state `after_step` keeps while the run lasts
        self._kill_at = int(os.environ.get(FAULT_ENV, "0") or 0)
        self.train_metrics: dict[str, float] = {}
        self.eval_metrics: dict[str, float] = {}
        self._window_tokens, self._window_start = 0, time.perf_counter()
        with RunLog(self.output_dir, accelerator=acc, total_steps=self.total_steps,
                    show_progress=config.progress, resume_step=start, is_main=acc.is_main_process) as self._log:
            if resumed_from is not None:
                self._log.info(f"resumed from {resumed_from} at step {start}/{self.total_steps}")
            elif config.eval_on_start and self.eval_items:
                self._log.log(0, self.evaluate())
            if is_online(self.objective):  # it samples its items from the policy as it trains: its loop, our steps
                self.objective.train(self, start)
            else:
                for step in range(start, self.total_steps):
                    if self.finished:
                        break
                    epoch = (step + 1) * config.grad_accum / self.plan.per_epoch  # passes over the data so far
                    metrics, tokens = self.optimizer_step(self.micro_batches(step), {"epoch": epoch})
                    self.after_step(metrics, tokens)
            self.eval_metrics = self.evaluate()
            if self.eval_metrics:
                self._log.log(self.step, self.eval_metrics)
                self._log.info(format_metrics(self.eval_metrics))
        if acc.is_main_process:
            for tracker in acc.trackers:
                tracker.finish()
        return TrainResult(self.step, self.train_metrics, self.eval_metrics,
                           self.run_tokens / max(self.run_seconds, 1e-9), self.run_seconds, self.stopped_by)
