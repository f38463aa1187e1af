"""When a run stops before its step budget: a metric crossing a bound (`--stop-when "eval/reward>=0.8, kl>6"`,
the RLHF loop's "stop when the reward reaches a target or the KL passes a bound") or an eval metric that stopped
improving (`--patience N` evaluations on `--patience-metric`).

Conditions are checked after every optimizer step against that step's metrics and, on the steps that evaluate,
the eval metrics; the first that holds stops the run (the engine saves the model as at the end of the budget). A
name matches the logged key itself, else name/mean, name/ref or name/ref_per_token: "reward" is reward/mean, "kl"
is kl/ref (PPO, RLOO) or kl/ref_per_token (GRPO).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bridle.errors import ConfigError

_CONDITION = re.compile(r"^\s*([A-Za-z_][\w/.\-]*)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
SUFFIXES = ("", "/mean", "/ref", "/ref_per_token")


def resolve_metric(name: str, metrics: Mapping[str, float]) -> str | None:
    """The logged key `name` stands for in `metrics` (itself, name/mean, name/ref), or None."""
    return next((name + s for s in SUFFIXES if name + s in metrics), None)


@dataclass(frozen=True)
class StopCondition:
    """`metric op value`, e.g. kl > 6."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def check(self, metrics: Mapping[str, float]) -> str | None:
        """The reason to stop ("kl/ref=6.31 > 6") when the condition holds on `metrics`, else None."""
        key = resolve_metric(self.metric, metrics)
        if key is None:
            return None
        found = float(metrics[key])
        if math.isfinite(found) and _OPS[self.op](found, self.value):
            return f"{key}={found:.4g} {self.op} {self.value:g}"
        return None


def parse_stop_when(spec: str) -> list[StopCondition]:
    """Comma-separated conditions "metric op number" (op: >=, <=, >, <); "" = none."""
    conditions = []
    for part in (p for p in spec.split(",") if p.strip()):
        match = _CONDITION.match(part)
        if not match:
            raise ConfigError(f"stop_when: cannot read {part.strip()!r}. Write METRIC OP NUMBER with OP one of >=, <=, "
                              '>, <, several separated by commas, e.g. --stop-when "eval/reward>=0.8, kl>6".')
        conditions.append(StopCondition(match.group(1), match.group(2), float(match.group(3))))
    return conditions


def patience_direction(metric: str, mode: str) -> str:
    """"min" or "max": `mode` itself, or for "auto", min for losses and KL, max for anything else."""
    if mode in ("min", "max"):
        return mode
    return "min" if any(word in metric for word in ("loss", "kl", "perplexity")) else "max"


class Stopping:
    """The stop conditions and the patience counter of one run; `check` after each step says whether to stop."""

    def __init__(self, stop_when: str = "", *, patience: int = 0, patience_metric: str = "eval/loss",
                 patience_mode: str = "auto", min_delta: float = 0.0) -> None:
        self.conditions = parse_stop_when(stop_when)
        self.patience, self.patience_metric = patience, patience_metric
        self.direction = patience_direction(patience_metric, patience_mode)
        self.min_delta = min_delta
        self.best: float | None = None
        self.evals_without_improvement = 0
        self._patience_key_seen = False

    def check(self, metrics: Mapping[str, float], eval_metrics: Mapping[str, float] | None = None) -> str | None:
        """Why the run should stop after this step, or None. `eval_metrics` only on steps that evaluated."""
        merged = {**metrics, **(eval_metrics or {})}
        self._check_names(metrics, eval_metrics)
        for condition in self.conditions:
            reason = condition.check(merged)
            if reason:
                return f"stop_when {condition}: {reason}"
        if self.patience > 0 and eval_metrics:
            return self._patience(eval_metrics)
        return None

    def _check_names(self, metrics: Mapping[str, float], eval_metrics: Mapping[str, float] | None) -> None:
        """A condition on a metric the run does not log could never stop it: an error at the first step (train
        metrics) or the first evaluation (eval/ metrics), instead of a run that silently ignores it."""
        for condition in self.conditions:
            pool = eval_metrics if condition.metric.startswith("eval/") else metrics
            if pool and resolve_metric(condition.metric, pool) is None:
                raise ConfigError(f"stop_when {condition}: this run logs no metric {condition.metric!r} (nor "
                                  f"{', '.join(condition.metric + s for s in SUFFIXES[1:])}). It logs: "
                                  f"{', '.join(sorted(pool))}.")

    def _patience(self, eval_metrics: Mapping[str, float]) -> str | None:
        key = resolve_metric(self.patience_metric, eval_metrics)
        if key is None:
            raise ConfigError(f"patience_metric {self.patience_metric!r} is not among the eval metrics "
                              f"({', '.join(sorted(eval_metrics)) or 'none'}); pass --patience-metric with one.")
        value = float(eval_metrics[key])
        better = self.best is None or (value < self.best - self.min_delta if self.direction == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best, self.evals_without_improvement = value, 0
            return None
        self.evals_without_improvement += 1
        if self.evals_without_improvement >= self.patience:
            return (f"patience: {key} has not improved on its best {self.best:.4g} ({self.direction}) for "
                    f"{self.patience} evaluations")
        return None

    def state_dict(self) -> dict[str, float | int | None]:
        return {"best": self.best, "evals_without_improvement": self.evals_without_improvement}

    def load_state_dict(self, state: Mapping[str, float | int | None]) -> None:
        self.best = state.get("best")  # type: ignore[assignment]
        self.evals_without_improvement = int(state.get("evals_without_improvement") or 0)
