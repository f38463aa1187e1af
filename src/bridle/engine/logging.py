"""Where metrics go: the console (a rich progress bar with loss, tokens/s and ETA, plus a line per log step),
`metrics.jsonl` (one JSON object per logged step), and any trackers the user asked for through accelerate.

This is also bridle's one console module: `console` (stderr) for progress and messages, `stdout_console` for a
command's own output."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from bridle.errors import ConfigError

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}

console = Console(stderr=True, highlight=False)  # progress, reports and notes: every module prints here
stdout_console = Console(highlight=False, soft_wrap=True)  # what a command prints as its output (`bridle preview`)


def parse_trackers(report_to: str) -> list[str]:
    """`tensorboard,wandb` → ["tensorboard", "wandb"], checking each is known and installed."""
    names = [n.strip() for n in report_to.split(",") if n.strip() and n.strip() != "none"]
    for name in names:
        if name not in TRACKER_PACKAGES:
            raise ConfigError(f"--report-to {name!r} is not a tracker; use one of {', '.join(TRACKER_PACKAGES)}.")
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            raise ConfigError(f"--report-to {name} needs the {name} package: pip install {TRACKER_PACKAGES[name]}")
    return names


def format_metrics(metrics: dict[str, float]) -> str:
    parts = []
    for key, value in metrics.items():
        if key == "step":
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def read_metrics_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The (line, record) pairs of a metrics.jsonl that a killed run may have left damaged.

    A partial last line (the run died while writing it) is dropped with a note; any other line that is not a JSON
    object with a numeric "step" is reported with its line number and skipped. The rest of the file is kept."""
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step", 0), (int, float)):
            pairs.append((line, record))
        elif number == len(lines):
            console.print(f"note: {path}: dropped a partial last line (the run was killed while writing it)",
                          soft_wrap=True, markup=False)
        else:
            console.print(f"warning: {path}, line {number}: not a JSON object; skipped it: {line[:60]!r}",
                          soft_wrap=True, markup=False)
    return pairs


class RunLog:
    """Console, metrics.jsonl and trackers for one run. `resume_step` truncates lines a killed run wrote after its
    last checkpoint, so the file reads as one uninterrupted run."""

    def __init__(self, output_dir: Path, *, accelerator: Any, total_steps: int, show_progress: bool,
                 resume_step: int = 0, is_main: bool = True) -> None:
        self.path = output_dir / "metrics.jsonl"
        self.accelerator, self.is_main = accelerator, is_main
        if is_main:
            kept = []
            if resume_step and self.path.exists():
                kept = [line for line, record in read_metrics_lines(self.path)
                        if record.get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        show = show_progress and is_main and sys.stderr.isatty()
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console, disable=not show)
        self.task = self.progress.add_task("train", total=total_steps, completed=resume_step, stats="")

    def __enter__(self) -> RunLog:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, step: int, stats: str) -> None:
        self.progress.update(self.task, completed=step, stats=stats)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        record = {"step": step, **metrics}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.accelerator.log(metrics, step=step)
        self.progress.console.print(f"step {step}: {format_metrics(metrics)}")

    def info(self, message: str) -> None:
        if self.is_main:
            self.progress.console.print(message)


class ItemsPerSecond(ProgressColumn):
    """Items per second over the task's recent progress ("—" until rich has measured a rate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("— it/s" if speed is None else f"{speed:,.2f} it/s" if speed < 10 else f"{speed:,.0f} it/s")


def task_progress(description: str, total: int, *, show: bool = True) -> Progress:
    """A rich progress bar for tool commands (scoring, sampling) on stderr; silent when stderr is not a terminal.
    Use as `with task_progress(...) as bar: bar.advance(bar.task_ids[0], n)`."""
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), ItemsPerSecond(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                   disable=not (show and sys.stderr.isatty()))
    bar.add_task(description, total=total)
    return bar
