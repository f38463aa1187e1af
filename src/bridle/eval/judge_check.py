"""How far can you trust a judge? Its verdicts against human (or stronger-judge) labels on a labelled set.

Two tasks:

- `refusal`: the judge classifies each (request, response) as refusal or compliance with the `refusal` template
  (`ClassifierJudge`: labels [[R]] / [[C]]). Reference labels, mapped to refusal yes / no:
  XSTest v2 `final_label`: 1_full_compliance → compliance; 2_full_refusal and 3_partial_refusal → refusal
  (the XSTest paper counts partial refusals as refusals). PyRIT `human_score`: "1" → refusal, "0" → compliance.
- `pairwise`: a `PairwiseJudge` sees each AlpacaEval pair in both orders; its combined verdict is compared with
  GPT-4's `preference` (1 → output_1 = "A", 2 → output_2 = "B", 0 or 1.5 → "tie"; rows with no preference are
  left out and counted). Position bias is measured by the order swap: the position-inconsistency rate and the
  rate at which a single-order verdict picks the answer shown first.

Agreement is accuracy and Cohen's κ with bootstrap intervals (`bridle.eval.agreement.cohen_kappa`), over the items
the judge's verdict could be read for; unreadable verdicts are counted, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridle.errors import ConfigError
from bridle.eval.agreement import cohen_kappa
from bridle.eval.stats import bootstrap_interval
from bridle.feedback.classifier import (  # noqa: F401  (re-exported: judge-check's classifier)
    REFUSAL_LABELS,
    Classification,
    ClassifierJudge,
    load_classifier_template,
)
from bridle.feedback.judges import PairwiseJudge, summarize_pairs

TASKS = ("refusal", "pairwise")
DEFAULT_DATA = {"refusal": "judge_eval/xstest_v2_completions_labeled.jsonl.gz",
                "pairwise": "alpaca_eval/annotations_alpaca_eval_gpt4__gpt35_turbo_instruct_vs_text_davinci_003"
                            ".jsonl.gz"}  # relative to the shared data folder
XSTEST_REFUSAL = {"1_full_compliance": False, "2_full_refusal": True, "3_partial_refusal": True}
PYRIT_REFUSAL = {"1": True, "0": False}
ALPACA_PREFERENCE = {1.0: "A", 2.0: "B", 0.0: "tie", 1.5: "tie"}

# ---- reference labels ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefusalItem:
    prompt: str
    response: str
    refusal: bool


@dataclass(frozen=True)
class PairItem:
    prompt: str
    answer_a: str
    answer_b: str
    preference: str  # "A" (answer_a better), "B", "tie"


def refusal_items(rows: Sequence[Mapping[str, Any]], source: str = "data") -> list[RefusalItem]:
    """XSTest rows (prompt, completion, final_label) or PyRIT rows (objective, assistant_response, human_score) as
    refusal yes / no items; see the module docstring for the mapping."""
    items = []
    for i, row in enumerate(rows):
        if "final_label" in row:
            label, table, fields = row["final_label"], XSTEST_REFUSAL, ("prompt", "completion")
        elif "human_score" in row:
            label, table, fields = str(row["human_score"]).strip(), PYRIT_REFUSAL, ("objective", "assistant_response")
        else:
            raise ConfigError(f"{source}, row {i + 1}: no reference label. Refusal rows need XSTest's \"final_label\" "
                              "(with prompt, completion) or PyRIT's \"human_score\" (with objective, "
                              "assistant_response).")
        if label not in table:
            raise ConfigError(f"{source}, row {i + 1}: label {label!r} is not one of {sorted(table)}.")
        missing = [f for f in fields if not isinstance(row.get(f), str)]
        if missing:
            raise ConfigError(f"{source}, row {i + 1}: field(s) {', '.join(missing)} missing or not text.")
        items.append(RefusalItem(row[fields[0]], row[fields[1]], table[label]))
    return items


def pairwise_items(rows: Sequence[Mapping[str, Any]], source: str = "data") -> tuple[list[PairItem], int]:
    """AlpacaEval annotation rows (instruction, output_1, output_2, preference) as pair items, and how many rows
    were left out for having no preference."""
    items, skipped = [], 0
    for i, row in enumerate(rows):
        missing = [f for f in ("instruction", "output_1", "output_2") if not isinstance(row.get(f), str)]
        if missing or "preference" not in row:
            raise ConfigError(f"{source}, row {i + 1}: pairwise rows need instruction, output_1, output_2 and "
                              f"preference (AlpacaEval annotations); missing: {', '.join(missing) or 'preference'}.")
        if row["preference"] is None or row["preference"] == "":
            skipped += 1
            continue
        try:
            preference = ALPACA_PREFERENCE[float(row["preference"])]
        except (KeyError, ValueError):
            raise ConfigError(f"{source}, row {i + 1}: preference {row['preference']!r} is not one of 1, 2 "
                              "(which output is better) or 0 / 1.5 (a draw).") from None
        items.append(PairItem(row["instruction"], row["output_1"], row["output_2"], preference))
    return items, skipped


def default_data(task: str) -> Path | None:
    """The task's labelled file in the shared data folder (`bridle.data.shared`), or None when it is not there."""
    from bridle.data.shared import shared_data_file

    return shared_data_file(DEFAULT_DATA[task])


def sample(items: list[Any], limit: int, seed: int) -> list[Any]:
    """`limit` items drawn at random without replacement (seeded), kept in file order; all of them for limit <= 0.
    A random draw, not the first rows: labelled files are often sorted (XSTest by model and prompt type)."""
    if limit <= 0 or limit >= len(items):
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


# ---- a judge for classification ------------------------------------------------------------------------------


# ---- the checks ----------------------------------------------------------------------------------------------


def _agreement(reference: list[str], judged: list[str], labels: Sequence[str], *, resamples: int, seed: int
               ) -> dict[str, Any]:
    agreement = cohen_kappa(reference, judged, labels, resamples=resamples, seed=seed)
    low, high = agreement.kappa_interval
    return {"judged": agreement.n, "accuracy": agreement.accuracy, "accuracy_ci95": list(agreement.accuracy_interval),
            "kappa": agreement.kappa, "kappa_ci95": [low, high], "expected_agreement": agreement.expected_agreement,
            "labels": list(labels), "confusion": agreement.confusion.tolist(),
            "confusion_axes": "rows: reference label, columns: judge label",
            "no_better_than_chance": bool(not (low > 0)) if not math.isnan(low) else True}


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties counting 1/2
    (the Mann–Whitney U / (n_pos · n_neg)). 0.5 is no signal, whatever the threshold. NaN without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def check_refusal(judge: ClassifierJudge, items: Sequence[RefusalItem], *, resamples: int = 1000, seed: int = 0
                  ) -> dict[str, Any]:
    """The judge's refusal verdicts against the reference labels."""
    found = judge.classify([i.prompt for i in items], [i.response for i in items])
    name = {"R": "refusal", "C": "compliance"}
    pairs = [("refusal" if i.refusal else "compliance", name.get(c.label, c.label)) for i, c in zip(items, found)
             if c.label is not None]
    report = {"task": "refusal", "items": len(items), "unparsed": len(items) - len(pairs),
              "reference_refusal_rate": sum(i.refusal for i in items) / len(items) if items else math.nan,
              "judge_refusal_rate": (sum(j == "refusal" for _, j in pairs) / len(pairs)) if pairs else math.nan}
    report.update(_agreement([r for r, _ in pairs], [j for _, j in pairs], ("refusal", "compliance"),
                             resamples=resamples, seed=seed))
    # Threshold-free: do the judge's P(refusal) rank refusals above compliances, even where the argmax is one-sided?
    scored = [(c.probabilities["R"], i.refusal) for i, c in zip(items, found) if c.probabilities]
    if scored:
        p_refusal, truth = np.array([p for p, _ in scored]), np.array([t for _, t in scored])
        report["auroc_p_refusal"] = auroc(p_refusal, truth)
        report["auroc_p_refusal_ci95"] = list(bootstrap_interval(lambda idx: auroc(p_refusal[idx], truth[idx]),
                                                                 len(scored), resamples=resamples, seed=seed))
    return report


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def check_pairwise(judge: PairwiseJudge, items: Sequence[PairItem], *, resamples: int = 1000, seed: int = 0
                   ) -> dict[str, Any]:
    """The judge's combined two-order verdicts against the reference preferences, and its position bias."""
    verdicts = judge.compare([i.prompt for i in items], [i.answer_a for i in items], [i.answer_b for i in items])
    pairs = [(i.preference, v.winner) for i, v in zip(items, verdicts) if v.winner is not None]
    # verdicts[0]: a shown first, so "A" picks the first-shown; verdicts[1]: b shown first (mapped back), so "B" does
    readable = [(order, x) for v in verdicts for order, x in enumerate(v.verdicts) if x is not None]
    first = sum((order == 0 and x == "A") or (order == 1 and x == "B") for order, x in readable)
    report = {"task": "pairwise", "items": len(items), "unparsed": len(items) - len(pairs),
              "position_inconsistency_rate": _nan_if_none(summarize_pairs(verdicts)["position_inconsistency_rate"]),
              "first_shown_rate": first / len(readable) if readable else math.nan,
              "single_order_verdicts": len(readable)}
    report.update(_agreement([r for r, _ in pairs], [j for _, j in pairs], ("A", "B", "tie"),
                             resamples=resamples, seed=seed))
    return report


def print_report(report: Mapping[str, Any], *, title: str) -> None:
    """The report as a table on the console (stderr), and a plain sentence on whether the judge beats chance."""
    from rich.table import Table

    from bridle.engine.logging import console

    def ci(name: str) -> str:
        low, high = report[f"{name}_ci95"]
        return f"{report[name]:.3f}  [{low:.3f}, {high:.3f}] 95% CI"

    table = Table(title=title, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("items / judged / unparsed", f"{report['items']} / {report['judged']} / {report['unparsed']}")
    table.add_row("accuracy", ci("accuracy"))
    table.add_row("Cohen's kappa", ci("kappa"))
    table.add_row("chance agreement p_e", f"{report['expected_agreement']:.3f}")
    if report["task"] == "refusal":
        table.add_row("refusal rate: reference / judge",
                      f"{report['reference_refusal_rate']:.3f} / {report['judge_refusal_rate']:.3f}")
        if "auroc_p_refusal" in report:
            table.add_row("AUROC of P(refusal) (0.5 = no signal)", ci("auroc_p_refusal"))
    else:
        table.add_row("position-inconsistency rate", f"{report['position_inconsistency_rate']:.3f}")
        table.add_row("picks the first-shown answer", f"{report['first_shown_rate']:.3f} of "
                                                      f"{report['single_order_verdicts']} single-order verdicts")
    console.print(table)
    confusion = Table(title="confusion (rows: reference, columns: judge)", header_style="bold")
    confusion.add_column("")
    for label in report["labels"]:
        confusion.add_column(label, justify="right")
    for label, row in zip(report["labels"], report["confusion"]):
        confusion.add_row(label, *map(str, row))
    console.print(confusion)
    if report["no_better_than_chance"]:
        console.print("kappa's 95% interval includes 0: this judge is no better than chance on this set.",
                      soft_wrap=True)
    else:
        console.print("kappa's 95% interval is above 0: the judge agrees with the reference beyond chance.",
                      soft_wrap=True)
