"""Value rules for config keys, checked before any model loads: every broken key is named at once, with its fix.

A type says a key is a float; these rules say which floats make sense (finite, in range) and which combinations
work. Values that are legal but almost certainly a mistake (a learning rate of 0) are warned about, not refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridle.errors import ConfigError

# key: (lowest allowed, highest allowed, whether the highest is excluded); None = no bound.
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "max_length": (1, None, False),
    "batch_size": (1, None, False),
    "grad_accum": (1, None, False),
    "log_every": (1, None, False),
    "keep_checkpoints": (1, None, False),
    "max_nonfinite_steps": (1, None, False),
    "lora_r": (1, None, False),
    "eval_every": (0, None, False),
    "save_every": (0, None, False),
    "epochs": (0, None, False),
    "lr": (0, None, False),
    "weight_decay": (0, None, False),
    "max_grad_norm": (0, None, False),
    "adam_beta1": (0, 1, True),
    "adam_beta2": (0, 1, True),
    "warmup_ratio": (0, 1, True),
    "eval_fraction": (0, 1, True),
    "lora_dropout": (0, 1, True),
    "lora_alpha": (0, None, False),
    "patience": (0, None, False),
    "num_processes": (1, None, False),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _range_text(low: float | None, high: float | None, open_high: bool) -> str:
    if high is None:
        return f">= {low:g}"
    return f"in [{low:g}, {high:g}{')' if open_high else ']'}"


def problems_of(config: Any) -> list[str]:
    """Every rule `config` breaks, one sentence each (empty when it is fine)."""
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{_flag(f.name)} must be a finite number; got {value}.")
            continue
        if f.name in RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high, open_high = RANGES[f.name]
            if (low is not None and value < low) or (high is not None and (value >= high if open_high
                                                                          else value > high)):
                problems.append(f"{_flag(f.name)} must be {_range_text(low, high, open_high)}; got {value!r}.")
    max_steps = getattr(config, "max_steps", -1)
    if max_steps == 0 or max_steps < -1:
        problems.append(f"--max-steps must be >= 1, or -1 to take the steps from --epochs; got {max_steps}.")
    elif max_steps == -1 and getattr(config, "epochs", 1) == 0:
        problems.append("--epochs 0 trains nothing: set --epochs > 0 or --max-steps >= 1.")
    stop_when = getattr(config, "stop_when", "")
    if stop_when:
        from bridle.engine.stopping import parse_stop_when

        try:
            parse_stop_when(stop_when)
        except ConfigError as e:
            problems.append(str(e))
    if getattr(config, "patience", 0) > 0 and not getattr(config, "eval_every", 0):
        problems.append("--patience counts evaluations, but --eval-every is 0 (evaluate only at the end): set "
                        "--eval-every N (and eval data) or --patience 0.")
    output_dir = getattr(config, "output_dir", "")
    if output_dir:
        problem = unwritable(Path(output_dir))
        if problem:
            problems.append(problem)
    return problems


def unwritable(directory: Path) -> str | None:
    """Why `directory` cannot be created and written to, or None. Tries a real file in its nearest existing
    ancestor (permission bits alone say nothing to root or on read-only mounts)."""
    path = directory.expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"--output-dir {directory}: {existing} is a file, so the directory cannot be made there."
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return (f"--output-dir {directory}: cannot write in {existing} ({why}). Choose a directory you can write "
                f"to{' (it is a read-only location)' if not os.access(existing, os.W_OK) else ''}.")
    return None


def warnings_of(config: Any) -> list[str]:
    """Legal values that are almost certainly mistakes."""
    notes = []
    if getattr(config, "lr", 1.0) == 0:
        notes.append("warning: --lr 0: the optimizer will not change the weights (the run only measures).")
    return notes


def validate(config: Any, note: Callable[[str], None] | None = None) -> None:
    """Raise one ConfigError listing every broken key; pass warnings to `note` (the CLI prints them)."""
    problems = problems_of(config)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} config values cannot work:\n" + "\n".join(f"- {p}" for p in problems))
    for text in warnings_of(config):
        if note is not None:
            note(text)
