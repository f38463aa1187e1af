"""The honest part of a report: which figures of an evaluation are too weak to lean on, read from the numbers alone.

A report that shows a win rate of 56% without saying that its interval runs from 41% to 70% invites a wrong
conclusion. These rules turn `bridle eval`'s report.json into plain sentences, so the page says what a careful
reader would say. Each rule is a pure function of the report; the thresholds are module constants.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

FEW_PROMPTS = 50  # below this many prompts a win rate moves 2+ points per prompt and intervals are wide
INCONSISTENT = 0.3  # a judge that flips its verdict with the answers' order this often is mostly measuring order
UNPARSED = 0.1  # more unread verdicts than this and the rate is over a prompt set the judge chose
MOSTLY_TIES = 0.5  # a judge that calls most pairs a tie barely separates the answers


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def interval_text(interval: Sequence[float | None]) -> str:
    low, high = interval
    return f"[{pct(low)}, {pct(high)}]"


def finite(x: Any) -> float | None:
    """A finite float, or None (missing, null, NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def interval_of(x: Any) -> tuple[float, float] | None:
    if not isinstance(x, (list, tuple)) or len(x) != 2:
        return None
    low, high = finite(x[0]), finite(x[1])
    return None if low is None or high is None else (low, high)


def model_mean(models: Mapping[str, Any], name: str, key: str) -> float | None:
    entry = models.get(name, {}).get(key)
    return finite(entry.get("mean")) if isinstance(entry, Mapping) else None


def prompt_weaknesses(report: Mapping[str, Any]) -> list[str]:
    n = finite(report.get("prompts"))
    if n is None or n >= FEW_PROMPTS:
        return []
    step = f"; one prompt moves a win rate by {100 / n:.1f} points" if n else ""
    return [f"few prompts ({n:.0f}, under {FEW_PROMPTS}): every interval is wide{step}. Read the figures as a "
            "smoke test, not a measurement."]


def rate_weaknesses(pair: Mapping[str, Any], label: str) -> list[str]:
    """A win rate with no verdicts, no interval, or an interval that includes 50% says nothing about which is better."""
    rate, judged = finite(pair.get("win_rate")), finite(pair.get("judged"))
    interval = interval_of(pair.get("win_rate_interval"))
    if rate is None or not judged:
        return [f"{label}: no verdict was read, so there is no win rate."]
    if interval is None:
        return [f"{label}: the win rate {pct(rate)} has no interval (bootstrap off), so its uncertainty is unknown."]
    if interval[0] <= 0.5 <= interval[1]:
        return [f"{label}: win rate {pct(rate)} with 95% interval {interval_text(interval)}, which includes 50%: "
                "no measurable difference between the two."]
    return []


def pair_weaknesses(pair: Mapping[str, Any], models: Mapping[str, Any]) -> list[str]:
    """What is weak about one pair's win rate: its interval, the judge's order effects, unread verdicts, ties, a
    length-controlled rate pointing the other way, and a reward that rises while the judge prefers the other."""
    a, b = pair.get("model_a", "a"), pair.get("model_b", "b")
    label = f"{a} vs {b}"
    out = rate_weaknesses(pair, label)
    rate = finite(pair.get("win_rate"))
    inconsistent = finite(pair.get("position_inconsistency_rate"))
    if inconsistent is not None and inconsistent > INCONSISTENT:
        out.append(f"{label}: the judge's verdicts depend on order: on {pct(inconsistent)} of prompts it named a "
                   "different winner when the answers were swapped (counted as ties).")
    prompts, unparsed = finite(pair.get("prompts")), finite(pair.get("unparsed"))
    if prompts and unparsed is not None and unparsed / prompts > UNPARSED:
        out.append(f"{label}: {unparsed:.0f} of {prompts:.0f} verdicts ({pct(unparsed / prompts)}) were unreadable "
                   "and left out; the win rate is over the prompts the judge could answer.")
    ties = finite(pair.get("tie_rate"))
    if ties is not None and ties > MOSTLY_TIES:
        out.append(f"{label}: {pct(ties)} of verdicts are ties: the judge rarely separates the answers.")
    lc = finite(pair.get("lc_win_rate"))
    if rate is not None and lc is not None and (rate - 0.5) * (lc - 0.5) < 0:
        out.append(f"{label}: the length-controlled win rate ({pct(lc)}) points the other way from the raw one "
                   f"({pct(rate)}): the raw result may come from answer length.")
    reward_a, reward_b = model_mean(models, a, "reward"), model_mean(models, b, "reward")
    if rate is not None and reward_a is not None and reward_b is not None:
        if reward_a > reward_b and rate < 0.5:
            out.append(_hacking(a, b, reward_a, reward_b, 1 - rate))
        elif reward_b > reward_a and rate > 0.5:
            out.append(_hacking(b, a, reward_b, reward_a, rate))
    return out


def _hacking(higher: str, other: str, reward_high: float, reward_low: float, judge_rate: float) -> str:
    return (f"possible reward hacking: {higher} gets the higher reward ({reward_high:.3f} vs {reward_low:.3f}) but "
            f"the judge prefers {other} ({pct(judge_rate)} of verdicts): the reward model may be rewarding something "
            "the judge does not value.")


def check_weaknesses(checks: Mapping[str, Any]) -> list[str]:
    """A checkable metric is weak when few answers were checked, or when two models' intervals overlap."""
    out = []
    for name, per_model in checks.items():
        if not isinstance(per_model, Mapping):
            continue
        few = [f"{m} ({finite(v.get('n')):.0f})" for m, v in per_model.items()
               if isinstance(v, Mapping) and finite(v.get("n")) is not None and finite(v.get("n")) < FEW_PROMPTS]
        if few:
            out.append(f"check {name}: few answers checked: {', '.join(few)}.")
        for (m1, v1), (m2, v2) in itertools.combinations(per_model.items(), 2):
            i1 = interval_of(v1.get("interval")) if isinstance(v1, Mapping) else None
            i2 = interval_of(v2.get("interval")) if isinstance(v2, Mapping) else None
            if i1 is not None and i2 is not None and i1[0] <= i2[1] and i2[0] <= i1[1]:
                out.append(f"check {name}: the 95% intervals of {m1} {interval_text(i1)} and {m2} "
                           f"{interval_text(i2)} overlap: no clear difference.")
    return out


def kl_weaknesses(models: Mapping[str, Any]) -> list[str]:
    """A 'KL' from greedy answers is a mean log-ratio, not a KL; a negative k1 estimate is sampling noise."""
    out = []
    kl = {name: m["kl_to_reference"] for name, m in models.items()
          if isinstance(m, Mapping) and isinstance(m.get("kl_to_reference"), Mapping)}
    if any("not a KL" in str(v.get("estimator", "")) for v in kl.values()):
        out.append("KL to the reference: measured on greedy answers, so it is the mean log-ratio of those answers, "
                   "not an estimate of KL(π ‖ π_ref); evaluate at temperature 1 for a KL estimate.")
    negative = [name for name, v in kl.items() if (finite(v.get("mean")) or 0.0) < 0]
    if negative:
        out.append(f"KL to the reference is below 0 for {', '.join(negative)}: a KL cannot be negative, so this is "
                   "sampling noise; more answers are needed.")
    return out


def eval_weaknesses(report: Mapping[str, Any], reward_pairs: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Every weakness of one `bridle eval` report.json (with the optional "checks" object), most general first.
    `reward_pairs`: win rates by reward model (`bridle.report.collect.reward_win_rates`), pair-shaped."""
    models = report.get("models") if isinstance(report.get("models"), Mapping) else {}
    out = prompt_weaknesses(report)
    for pair in report.get("pairs") or []:
        if isinstance(pair, Mapping):
            out += pair_weaknesses(pair, models)
    for pair in reward_pairs:
        out += rate_weaknesses(pair, f"{pair.get('model_a')} vs {pair.get('model_b')} by reward model")
    if isinstance(report.get("checks"), Mapping):
        out += check_weaknesses(report["checks"])
    return out + kl_weaknesses(models)


def stage_weaknesses(name: str, status: str | None, stopped_by: str | None) -> list[str]:
    """A stage that did not finish is itself a caveat on every figure after it."""
    if status in ("failed", "stopped"):
        why = f" by {stopped_by}" if stopped_by else ""
        return [f"stage {name} {status}{why}: its outputs, and the stages that read them, are incomplete."]
    return []
