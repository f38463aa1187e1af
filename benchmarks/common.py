"""Helpers shared by the benchmark scripts: peak RSS, progress logs, the per-step timers (Bridle's engine and TRL's
Trainer callback) and running one framework in a child process that hands back one JSON result line.

Each benchmark runs every framework in its own subprocess (`run_child_script`) so that `peak_rss_gib` (the child's
`resource.getrusage` maximum) is that framework's own. A step record is (wall seconds, process CPU seconds, real
tokens) of one optimizer step.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULT = "BENCH_RESULT "  # the prefix of a child's result line on its stdout

StepTime = tuple[float, float, int]  # (wall seconds, process CPU seconds, real tokens) of one optimizer step


def peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 2**20


def bench_logger(name: str) -> Callable[[str], None]:
    """A `log(message)` that writes "[bench <name>] message" to stderr (stdout is for the one JSON line)."""

    def log(message: str) -> None:
        print(f"[bench {name}] {message}", file=sys.stderr, flush=True)

    return log


def summarize(step_times: list[StepTime], warmup: int, losses: list[float], n_params: int,
              extra: dict[str, Any]) -> dict[str, Any]:
    """step_times: (wall seconds, process CPU seconds, real tokens) per optimizer step, warm-up ones first."""
    measured = step_times[warmup:]
    seconds = sum(t for t, _, _ in measured)
    cpu_seconds = sum(c for _, c, _ in measured)
    tokens = sum(n for _, _, n in measured)
    rates = sorted(n / max(t, 1e-9) for t, _, n in measured)
    return {"tokens_per_s": tokens / max(seconds, 1e-9), "peak_gib": peak_rss_gib(), "measured_steps": len(measured),
            "measured_tokens": tokens, "measured_seconds": seconds, "cpu_seconds": cpu_seconds,
            "median_step_tokens_per_s": rates[len(rates) // 2] if rates else 0.0,
            "step_seconds": [round(t, 3) for t, _, _ in measured],
            "mean_loss": sum(losses[warmup:]) / max(len(losses[warmup:]), 1), "n_params": n_params, **extra}


# -- per-step timers (imported lazily: only the children load torch / transformers) ------------------------------
def timed_engine(step_times: list[StepTime], losses: list[float], log: Callable[[str], None], label: str = "bridle",
                 loss_digits: int = 4) -> type:
    """An `Engine` subclass that times each optimizer step as the engine runs it: from the end of the previous
    step's bookkeeping (`Engine.after_step`: logging, eval, checkpoints, not timed) to the end of
    `Engine.optimizer_step`. For offline methods that is collate, forward, backward, clip, AdamW step; for online
    methods it also holds the round's `make_experience` on the first step of each round."""
    from bridle.engine import Engine

    class TimedEngine(Engine):
        def fit(self) -> Any:
            self._mark = (time.perf_counter(), time.process_time())
            return super().fit()

        def after_step(self, metrics: dict[str, float], tokens: int) -> None:
            t0, c0 = self._mark
            step_times.append((time.perf_counter() - t0, time.process_time() - c0, tokens))
            losses.append(metrics["loss"])
            log(f"{label} step {self.step + 1}: {step_times[-1][0]:.2f} s, {tokens} tokens, loss "
                f"{metrics['loss']:.{loss_digits}f}")
            super().after_step(metrics, tokens)
            self._mark = (time.perf_counter(), time.process_time())

    return TimedEngine


def trl_step_timer(step_times: list[StepTime], losses: list[float], batch_tokens: list[int],
                   log: Callable[[str], None], label: str = "trl") -> Any:
    """A TRL/transformers `TrainerCallback` timing each optimizer step from `on_step_begin` to `on_step_end`
    (forward, backward, clip, optimizer step; collation happens before `on_step_begin`). The trainer appends the
    real tokens of each micro-batch to `batch_tokens`; the callback clears it at each step's start."""
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            batch_tokens.clear()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            step_times.append((time.perf_counter() - self.t0, time.process_time() - self.c0, sum(batch_tokens)))
            log(f"{label} step {state.global_step}: {step_times[-1][0]:.2f} s, {sum(batch_tokens)} tokens")

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return Timer()


# -- children --------------------------------------------------------------------------------------------------------
def child_env(work: Path) -> dict[str, str]:
    """The environment of a child: offline hub and datasets, a private datasets cache, quiet libraries, no Hub
    kernels (transformers 5.25 depends on `kernels` and kernelizes every model it loads unless USE_HUB_KERNELS=0, so
    which layers run depends on the kernels version and cache; with it off every transformers version runs the same
    torch code, see "Peer versions" in docs/benchmarks.md)."""
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "USE_HUB_KERNELS": "0",
            "HF_DATASETS_CACHE": str(work / "hf-datasets"), "TRANSFORMERS_VERBOSITY": "error",
            "PYTHONWARNINGS": "ignore"}


def run_child_script(script: str | Path, args: list[str], work: Path, label: str) -> dict[str, Any]:
    """Run `python script args...` (its `--child` mode) and return the JSON of its result line. Its stderr passes
    through; any other stdout line is echoed to stderr, so the parent's stdout stays one JSON line."""
    cmd = [sys.executable, str(Path(script).resolve()), *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=child_env(work), cwd=REPO)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
        elif line.strip():
            print(line, file=sys.stderr)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{label} child failed (exit {proc.returncode})")
    return result


# -- versions and the final line ------------------------------------------------------------------------------------
VERSIONED = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "tokenizers", "kernels", "bridle-lm")


def versions() -> dict[str, str]:
    """The installed versions of python and of every package a figure depends on (from the distributions' metadata,
    so nothing is imported: a peer's step time can move several-fold between transformers releases, so every figure
    carries the versions it was taken with). A package that is not installed reads "absent"."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def print_final(line: dict[str, Any]) -> None:
    """A benchmark's one JSON line on stdout, with the `versions` it was measured with and the load averages (1, 5,
    15 min) at its end: a step time taken on a loaded machine says nothing about either framework."""
    print(json.dumps({**line, "load_avg_end": [round(x, 2) for x in os.getloadavg()], "versions": versions()}),
          flush=True)


def print_result(result: dict[str, Any]) -> None:
    """A child's result, as the one line `run_child_script` reads."""
    print(RESULT + json.dumps(result), flush=True)
