"""How good is a reward model on held-out pairs, and is it more than a length detector?

Pairwise accuracy with a bootstrap interval, accuracy split by which response is longer, expected calibration error
of σ(r_c − r_r) read as P(chosen preferred), and the same pairs judged by chance and by "prefer the longer response".
A reward model whose preferences mostly agree with "prefer longer" has learned length, whatever its accuracy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from bridle.engine.logging import console

LENGTH_GROUPS = ("chosen longer", "chosen shorter", "equal length")


def pair_outcomes(chosen: Sequence[float], rejected: Sequence[float]) -> list[float]:
    """1 where the chosen side scores higher, 0 where lower, 0.5 on a tie."""
    return [1.0 if c > r else 0.0 if c < r else 0.5 for c, r in zip(chosen, rejected)]


def bootstrap_ci(values: Sequence[float], *, resamples: int = 1000, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (seeded, so a report is reproducible)."""
    if not values:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1.0 - level) / 2
    return means[int(tail * (resamples - 1))], means[math.ceil((1 - tail) * (resamples - 1))]


def calibration_error(chosen: Sequence[float], rejected: Sequence[float], *, bins: int = 10) -> float:
    """Expected calibration error of p = σ(r_c − r_r) as P(chosen preferred), symmetrized: every pair is also read
    in the other order (prediction 1 − p, outcome 0), so the bins cover [0, 1] and order cannot hide bias.

    ECE = Σ_b (|b| / N) · |mean prediction in b − fraction of outcomes that are 1 in b|, equal-width bins.
    """
    predictions: list[tuple[float, float]] = []
    for c, r in zip(chosen, rejected):
        p = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, c - r))))
        predictions += [(p, 1.0), (1.0 - p, 0.0)]
    if not predictions:
        return math.nan
    groups: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for p, y in predictions:
        groups[min(int(p * bins), bins - 1)].append((p, y))
    total = len(predictions)
    return sum(len(g) / total * abs(sum(p for p, _ in g) / len(g) - sum(y for _, y in g) / len(g))
               for g in groups if g)


def length_group(chosen_len: int, rejected_len: int) -> str:
    return LENGTH_GROUPS[0] if chosen_len > rejected_len else LENGTH_GROUPS[1] if chosen_len < rejected_len \
        else LENGTH_GROUPS[2]


def evaluate_pairs(chosen: Sequence[float], rejected: Sequence[float], chosen_len: Sequence[int],
                   rejected_len: Sequence[int], *, resamples: int = 1000, seed: int = 0, bins: int = 10
                   ) -> dict[str, Any]:
    """Every number of the report from scores and response lengths (tokens) of the same pairs."""
    outcomes = pair_outcomes(chosen, rejected)
    longer = pair_outcomes(chosen_len, rejected_len)  # "prefer the longer response": ties count 0.5
    n = len(outcomes)
    low, high = bootstrap_ci(outcomes, resamples=resamples, seed=seed)
    by_length = {}
    for name in LENGTH_GROUPS:
        idx = [i for i in range(n) if length_group(chosen_len[i], rejected_len[i]) == name]
        by_length[name] = {"pairs": len(idx),
                           "accuracy": sum(outcomes[i] for i in idx) / len(idx) if idx else None}
    decided = [i for i in range(n) if chosen_len[i] != rejected_len[i] and chosen[i] != rejected[i]]
    agreement = (sum((chosen[i] > rejected[i]) == (chosen_len[i] > rejected_len[i]) for i in decided) / len(decided)
                 if decided else None)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"pairs": n, "accuracy": sum(outcomes) / n if n else math.nan, "accuracy_ci95": [low, high],
            "bootstrap": {"resamples": resamples, "seed": seed},
            "mean_margin": sum(margins) / n if n else math.nan,
            "ece": calibration_error(chosen, rejected, bins=bins), "ece_bins": bins,
            "accuracy_by_length": by_length,
            "baselines": {"chance": 0.5, "prefer_longer": sum(longer) / n if n else math.nan},
            "agreement_with_prefer_longer": agreement, "agreement_pairs": len(decided)}


def evaluate_reward_model(reward_model: Any, records: Sequence[Mapping], *, batch_size: int = 8,
                          resamples: int = 1000, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Score chosen and rejected of canonical preference records with a `RewardModel`, then `evaluate_pairs`.
    Lengths are response tokens as the reward model saw them (after its truncation)."""
    chosen = [reward_model.encode(r["prompt"], r["chosen"]) for r in records]
    rejected = [reward_model.encode(r["prompt"], r["rejected"]) for r in records]
    scores = reward_model.score_encoded(chosen + rejected, batch_size=batch_size, progress=progress)
    n = len(records)
    response_len = [sum(label != -100 for label in e.labels) for e in chosen + rejected]
    report = evaluate_pairs(scores[:n], scores[n:], response_len[:n], response_len[n:], resamples=resamples,
                            seed=seed)
    report["truncated_pairs"] = sum(c.truncated or r.truncated for c, r in zip(chosen, rejected))
    return report


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def print_report(report: Mapping[str, Any], *, title: str = "reward model evaluation") -> None:
    """The report as a rich table on stderr."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("pairs", justify="right")
    low, high = report["accuracy_ci95"]
    table.add_row("pairwise accuracy", f"{_fmt(report['accuracy'])}  [{_fmt(low)}, {_fmt(high)}] 95% CI",
                  str(report["pairs"]))
    for name, group in report["accuracy_by_length"].items():
        table.add_row(f"  accuracy, {name}", _fmt(group["accuracy"]), str(group["pairs"]))
    table.add_row("baseline: chance", _fmt(report["baselines"]["chance"]), str(report["pairs"]))
    table.add_row("baseline: prefer longer", _fmt(report["baselines"]["prefer_longer"]), str(report["pairs"]))
    table.add_row("agreement with 'prefer longer'", _fmt(report["agreement_with_prefer_longer"]),
                  str(report["agreement_pairs"]))
    table.add_row(f"calibration error (ECE, {report['ece_bins']} bins)", _fmt(report["ece"]), str(report["pairs"]))
    table.add_row("mean margin r_c − r_r", _fmt(report["mean_margin"]), str(report["pairs"]))
    if "truncated_pairs" in report:
        table.add_row("pairs truncated to fit", str(report["truncated_pairs"]), str(report["pairs"]))
    console.print(table)
