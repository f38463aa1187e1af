"""The sentences that open a report's evaluation: who won, by the judge and by the reward model, and what moved.

`bridle eval` reports each pair (a, b) as a's win rate, a listed first. In a before/after evaluation the model
listed first is the one before training, so the headline speaks for b, the later one: its win rate is 1 − a's
(ties count half either way) and its interval is a's, mirrored. The tables below it keep report.json's view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridle.report.weak import finite, interval_of, interval_text, model_mean, pct


def later_view(pair: Mapping[str, Any]) -> dict[str, Any] | None:
    """Model b's side of a pair: {"model", "other", "win_rate", "interval"}; None without a win rate."""
    rate = finite(pair.get("win_rate"))
    if rate is None:
        return None
    interval = interval_of(pair.get("win_rate_interval"))
    return {"model": pair.get("model_b"), "other": pair.get("model_a"), "win_rate": 1.0 - rate,
            "interval": None if interval is None else (1.0 - interval[1], 1.0 - interval[0])}


def _where(view: Mapping[str, Any]) -> str:
    interval = view["interval"]
    return f"95% interval {interval_text(interval)}" if interval is not None else "no interval"


def headlines(report: Mapping[str, Any], reward_pairs: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """One sentence per judged pair, per reward-model pair, per check, and for KL and length."""
    out = []
    judge = report.get("judge", "?")
    for pair in report.get("pairs") or []:
        view = later_view(pair)
        if view is not None:
            out.append(f"Judge {judge}, {pair.get('judged', '?')} verdicts: {view['model']} won "
                       f"{pct(view['win_rate'])} against {view['other']} ({_where(view)}; ties count half).")
    models = report.get("models") if isinstance(report.get("models"), Mapping) else {}
    source = f" {report['reward_model']}" if report.get("reward_model") else ""
    for pair in reward_pairs:
        view = later_view(pair)
        if view is None:
            continue
        a, b = view["other"], view["model"]
        means = (model_mean(models, b, "reward"), model_mean(models, a, "reward"))
        tail = f"; mean reward {means[0]:.3f} vs {means[1]:.3f}" if None not in means else ""
        out.append(f"Reward model{source}: {b} scored higher than {a} on {pct(view['win_rate'])} of "
                   f"{pair.get('judged', '?')} prompts ({_where(view)}; equal scores count half){tail}.")
    for check, per_model in (report.get("checks") or {}).items():
        if isinstance(per_model, Mapping):
            steps = [f"{name} {pct(c.get('rate'))}" if finite(c.get("rate")) is not None else f"{name} —"
                     for name, c in per_model.items() if isinstance(c, Mapping)]
            out.append(f"Check {check}: {' → '.join(steps)}.")
    kl = [(name, model_mean(models, name, "kl_to_reference")) for name in models]
    kl = [(name, value) for name, value in kl if value is not None]
    if kl:
        out.append("KL to the reference: " + ", ".join(f"{name} {value:.3f}" for name, value in kl) + ".")
    lengths = [(name, finite((m.get("length_chars") or {}).get("mean"))) for name, m in models.items()]
    lengths = [(name, value) for name, value in lengths if value is not None]
    if lengths:
        out.append("Mean answer length: " + " → ".join(f"{name} {value:.0f}" for name, value in lengths)
                   + " characters.")
    return out
