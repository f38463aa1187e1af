"""`bridle rlaif`: preference pairs labelled by an AI judge (RLAIF, Lee et al. 2023, "RLAIF vs. RLHF").

    prompt ──► k candidates from the policy ──► every pair of distinct candidates judged (both orders)
           ──► ties / unparsed / low-confidence pairs dropped and counted, at most N pairs kept per prompt
           ──► rows {"prompt", "chosen", "rejected", "probability", "agreement", ...} that `bridle dpo` / `rm` read

Position debiasing (Lee et al. 2023, §2.1): an LLM judge sees each pair twice, candidate a shown first and then b
shown first, and its preference probabilities are averaged over the two orders. `preference` is that average:
P(a ≻ b) = mean over orders of p(a) + ½·p(tie). A pair whose two orders pick different winners is a tie
(position-inconsistent) and is dropped unless `ties="probability"`, which lets the averaged probability decide.

Resume and caching: each finished prompt (its candidates and every verdict) is one line of `judgements.jsonl`,
written and flushed as it is made (`Journal`). A rerun skips those prompts without sampling or judging them again,
and rebuilds `pairs.jsonl` from the judgements, so a killed run ends with the file an uninterrupted run writes; a
rerun with another `--min-confidence`, `--max-pairs-per-prompt` or `--ties` re-filters the judgements for free.
Candidates of prompt i are sampled with seed `seed * SEED_STRIDE + i`, so they do not depend on what ran before.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from bridle.data.chat import Prompt
from bridle.data.prompts import PromptRow
from bridle.errors import ConfigError
from bridle.feedback.journal import Journal
from bridle.feedback.judges import Judge, PairVerdict, PairwiseJudge, RewardModelJudge

SEED_STRIDE = 100_003
TIES = ("drop", "probability")
EVEN = 1e-9  # a tie whose averaged probability is this close to ½ leans neither way
PAIRS_FILE, JUDGEMENTS_FILE, REPORT_FILE, SETTINGS_FILE = "pairs.jsonl", "judgements.jsonl", "report.json", \
    "settings.json"


class Policy(Protocol):
    """What samples candidates: `bridle.rollout.answers.AnswerGenerator` (or a test's stand-in)."""

    def answers(self, prompts: Sequence[Prompt], **settings: Any) -> list[list[str]]: ...


# ---- settings ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How candidates are drawn: `k` per prompt at `temperature` / `top_p`, at most `max_new_tokens` each."""

    k: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ConfigError(f"--k must be >= 2 (a pair needs two candidates), got {self.k}.")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}: greedy decoding gives k copies of "
                              "one answer, so there would be no pairs to judge.")
        if not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ConfigError("--top-p must be in (0, 1] and --max-new-tokens >= 1.")


@dataclass(frozen=True)
class PairFilter:
    """Which judged pairs become rows: not unparsed; not a tie (unless `ties="probability"` and the averaged
    probability leans one way); the chosen side's probability >= `min_confidence`; then at most
    `max_pairs_per_prompt` per prompt (0 = no cap), the most confident first."""

    min_confidence: float = 0.0
    max_pairs_per_prompt: int = 0
    ties: str = "drop"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"--min-confidence must be in [0, 1], got {self.min_confidence}.")
        if self.max_pairs_per_prompt < 0:
            raise ConfigError(f"--max-pairs-per-prompt must be >= 0 (0 = no cap), got {self.max_pairs_per_prompt}.")
        if self.ties not in TIES:
            raise ConfigError(f"--ties {self.ties!r}: use one of {', '.join(TIES)}.")

    @property
    def needs_probabilities(self) -> bool:
        return self.min_confidence > 0 or self.ties == "probability"


def gives_probabilities(judge: Judge) -> bool:
    """Whether the judge's verdicts carry preference probabilities: an LLM judge reading label probabilities (a
    local model), or a reward model (Bradley-Terry); not a rule, nor an LLM judge read from text (an endpoint)."""
    if isinstance(judge, PairwiseJudge):
        return judge.read == "probabilities"
    return isinstance(judge, RewardModelJudge)


def build_rlaif_judge(spec: str, *, batch_size: int = 8, template: str | None = None, rationale: bool = False,
                      max_new_tokens: int = 512) -> Judge:
    """The `--judge` of `bridle rlaif`: as `bridle eval --judge`, plus `rationale` (the LLM judge writes its reasoning
    before the verdict, which is kept in the rows)."""
    from bridle.feedback.judge_spec import build_backend, build_judge, is_llm_spec

    if is_llm_spec(spec):
        return PairwiseJudge(build_backend(spec, batch_size=batch_size), template, rationale=rationale,
                             max_new_tokens=max_new_tokens)
    if rationale:
        raise ConfigError(f"--rationale needs an LLM judge (local[:MODEL] or endpoint[:MODEL]); {spec!r} writes no "
                          "reasoning.")
    return build_judge(spec, batch_size=batch_size, template=template)


# ---- pure pieces ---------------------------------------------------------------------------------------------


def preference(verdict: PairVerdict) -> float | None:
    """P(a ≻ b), position bias cancelled: the mean over presentation orders of p(a) + ½·p(tie) (Lee et al. 2023
    average the two orders' probabilities). None when an order has no probabilities (rules, text-read judges)."""
    if not verdict.probabilities or any(p is None for p in verdict.probabilities):
        return None
    per_order = [p.get("A", 0.0) + 0.5 * p.get("tie", 0.0) for p in verdict.probabilities if p is not None]
    return sum(per_order) / len(per_order)


def candidate_pairs(candidates: Sequence[str]) -> tuple[list[tuple[int, int]], int]:
    """Every pair (i, j), i < j, of candidates whose texts differ, and how many identical pairs were left out
    (nothing to judge: a DPO row needs chosen != rejected)."""
    pairs = list(itertools.combinations(range(len(candidates)), 2))
    distinct = [(i, j) for i, j in pairs if candidates[i] != candidates[j]]
    return distinct, len(pairs) - len(distinct)


def judgement(index: int, row: PromptRow, candidates: Sequence[str], pairs: Sequence[tuple[int, int]],
              identical: int, verdicts: Sequence[PairVerdict]) -> dict[str, Any]:
    """One line of judgements.jsonl: a prompt's candidates and every verdict on them."""
    return {"prompt_index": index, "source_row": row.row, "prompt": row.prompt, "candidates": list(candidates),
            "identical": identical,
            "pairs": [{"a": i, "b": j, "winner": v.winner, "verdicts": list(v.verdicts),
                       "agreement": v.position_consistent, "preference": preference(v),
                       "probabilities": list(v.probabilities), "rationales": list(v.rationales), "raw": list(v.raw)}
                      for (i, j), v in zip(pairs, verdicts)]}


def select_pairs(record: dict[str, Any], rules: PairFilter) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The preference rows of one judgement and what was dropped, per `PairFilter` (see its docstring). Rows keep
    the order of the pairs; the cap keeps the most confident (the earlier pair on equal confidence)."""
    counts: Counter[str] = Counter(pairs_judged=len(record["pairs"]), identical=record["identical"])
    kept: list[tuple[float | None, int, int, dict[str, Any]]] = []  # (probability, chosen, rejected, pair)
    for pair in record["pairs"]:
        winner, pref = pair["winner"], pair["preference"]
        counts["unparsed_verdicts"] += sum(v is None for v in pair["verdicts"])
        if winner is None:
            counts["unparsed_pairs"] += 1
            continue
        if winner == "tie":
            if rules.ties == "probability" and pref is not None and abs(pref - 0.5) > EVEN:
                winner = "A" if pref > 0.5 else "B"
                counts["ties_broken"] += 1
            else:
                counts["ties"] += 1
                counts["ties_inconsistent" if pair["agreement"] is False else "ties_judged"] += 1
                continue
        chosen, rejected = (pair["a"], pair["b"]) if winner == "A" else (pair["b"], pair["a"])
        probability = None if pref is None else (pref if winner == "A" else 1.0 - pref)
        if rules.min_confidence > 0 and (probability is None or probability < rules.min_confidence):
            counts["below_confidence"] += 1
            continue
        kept.append((probability, chosen, rejected, pair))
    if rules.max_pairs_per_prompt and len(kept) > rules.max_pairs_per_prompt:
        ranked = sorted(range(len(kept)), key=lambda n: -(kept[n][0] if kept[n][0] is not None else 0.0))
        chosen_ones = set(ranked[:rules.max_pairs_per_prompt])
        counts["over_cap"] += len(kept) - len(chosen_ones)
        kept = [k for n, k in enumerate(kept) if n in chosen_ones]
    rows = []
    for probability, chosen, rejected, pair in kept:
        row = {"prompt": record["prompt"], "chosen": record["candidates"][chosen],
               "rejected": record["candidates"][rejected], "probability": probability, "agreement": pair["agreement"],
               "prompt_index": record["prompt_index"], "pair": [chosen, rejected]}
        if any(pair["rationales"]):
            row["rationales"] = pair["rationales"]
        rows.append(row)
    counts["kept"] = len(rows)
    return rows, counts


COUNTS = ("pairs_judged", "identical", "unparsed_pairs", "unparsed_verdicts", "ties", "ties_inconsistent",
          "ties_judged", "ties_broken", "below_confidence", "over_cap", "kept")


def summarize(records: Sequence[dict[str, Any]], rules: PairFilter) -> dict[str, Any]:
    """Counts over all prompts (see `select_pairs`), the position consistency (of the pairs judged in both orders
    with both verdicts read, the share whose orders agree; None when there are none) and the kept rows' mean
    probability."""
    total: Counter[str] = Counter()
    probabilities: list[float] = []
    with_pairs = 0
    for record in records:
        rows, counts = select_pairs(record, rules)
        total.update(counts)
        with_pairs += bool(rows)
        probabilities += [r["probability"] for r in rows if r["probability"] is not None]
    both = [p for r in records for p in r["pairs"] if len(p["verdicts"]) == 2 and None not in p["verdicts"]]
    return {"prompts": len(records), "candidates": sum(len(r["candidates"]) for r in records),
            **{name: total[name] for name in COUNTS}, "prompts_with_pairs": with_pairs,
            "position_consistency": sum(p["agreement"] is True for p in both) / len(both) if both else None,
            "mean_probability": sum(probabilities) / len(probabilities) if probabilities else None}


# ---- the run -------------------------------------------------------------------------------------------------


def sample_candidates(policy: Policy, prompt: Prompt, index: int, sampling: Sampling) -> list[str]:
    """The k candidates of prompt `index`, seeded by the index alone (a resumed run draws the same ones)."""
    return policy.answers([prompt], n=sampling.k, temperature=sampling.temperature, top_p=sampling.top_p,
                          max_new_tokens=sampling.max_new_tokens, seed=sampling.seed * SEED_STRIDE + index,
                          batch_size=1)[0]


def check_judge(judge: Judge, rules: PairFilter) -> None:
    """Refuse filters the judge cannot serve (before any model is loaded for sampling)."""
    if rules.needs_probabilities and not gives_probabilities(judge):
        raise ConfigError(f"the {judge.name} judge gives no preference probabilities, so --min-confidence and "
                          "--ties probability cannot be applied. Judge with a local LLM (local[:MODEL]) or a reward "
                          "model (rm:DIR), or drop those options.")


def check_settings(out_dir: Path, fingerprint: dict[str, Any], done: int) -> None:
    """Refuse to resume judgements made with other sampling or judge settings; record the settings."""
    path = out_dir / SETTINGS_FILE
    if done and path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(fingerprint) if before.get(k) != fingerprint.get(k))
        if changed:
            what = ", ".join(f"{k}: {before.get(k)!r} then, {fingerprint.get(k)!r} now" for k in changed)
            raise ConfigError(f"{out_dir} holds judgements made with other settings ({what}). Pass --overwrite to "
                              "start again, use another --output-dir, or rerun with the old settings.")
    path.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


def _check_prompts(journal: Journal, rows: Sequence[PromptRow]) -> None:
    for record in journal:
        i = record["prompt_index"]
        if i < len(rows) and record.get("prompt") != rows[i].prompt:
            raise ConfigError(f"{journal.path}: prompt {i} there differs from row {rows[i].row} of {rows[i].source}; "
                              "these judgements were made from other prompts. Pass --overwrite to start again, or "
                              "use another --output-dir.")


def _rewrite(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Replace a JSONL file atomically (a kill leaves the old file or the new one, never half of one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def run_rlaif(rows: Sequence[PromptRow], policy: Policy, judge: Judge, out_dir: str | Path, *,
              sampling: Sampling = Sampling(), rules: PairFilter = PairFilter(),
              fingerprint: dict[str, Any] | None = None, overwrite: bool = False, progress: bool = False,
              data_report: str = "") -> dict[str, Any]:
    """Sample, judge and filter every prompt not already judged in `out_dir`; write pairs.jsonl, judgements.jsonl,
    report.json and settings.json there; return the report."""
    from bridle.engine.logging import task_progress

    check_judge(judge, rules)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = {**(fingerprint or {}), **asdict(sampling)}
    with Journal(out / JUDGEMENTS_FILE, "prompt_index", fresh=overwrite) as journal:
        check_settings(out, fingerprint, len(journal))
        _check_prompts(journal, rows)
        records = {r["prompt_index"]: r for r in journal if r["prompt_index"] < len(rows)}
        _rewrite(out / PAIRS_FILE, [row for i in sorted(records) for row in select_pairs(records[i], rules)[0]])
        todo = [i for i in range(len(rows)) if i not in records]
        with task_progress("rlaif prompts", len(rows), show=progress) as bar, \
                (out / PAIRS_FILE).open("a", encoding="utf-8") as pairs_file:
            bar.update(bar.task_ids[0], completed=len(rows) - len(todo))
            for i in todo:
                candidates = sample_candidates(policy, rows[i].prompt, i, sampling)
                pairs, identical = candidate_pairs(candidates)
                verdicts = judge.compare([rows[i].prompt] * len(pairs), [candidates[a] for a, _ in pairs],
                                         [candidates[b] for _, b in pairs]) if pairs else []
                record = judgement(i, rows[i], candidates, pairs, identical, verdicts)
                for row in select_pairs(record, rules)[0]:  # pairs first: a kill before the journal line redoes them
                    pairs_file.write(json.dumps(row, ensure_ascii=False) + "\n")
                pairs_file.flush()
                journal.write(record)
                records[i] = record
                bar.advance(bar.task_ids[0], 1)
        torn = journal.torn_lines
    report = {**summarize([records[i] for i in sorted(records)], rules), "resumed_prompts": len(rows) - len(todo),
              "torn_lines": torn, "filter": asdict(rules), "settings": fingerprint,
              "judge_gives_probabilities": gives_probabilities(judge), "data": data_report}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict[str, Any], out_dir: str | Path) -> str:
    """The few lines `bridle rlaif` prints."""
    consistency = report["position_consistency"]
    mean_p = report["mean_probability"]
    lines = [
        f"prompts: {report['prompts']} ({report['resumed_prompts']} done before), candidates: {report['candidates']}",
        f"pairs judged: {report['pairs_judged']} (identical skipped: {report['identical']}), kept: {report['kept']} "
        f"from {report['prompts_with_pairs']} prompts",
        f"dropped: ties {report['ties']} (orders disagreed {report['ties_inconsistent']}, judged tie "
        f"{report['ties_judged']}), unparsed {report['unparsed_pairs']} pairs ({report['unparsed_verdicts']} "
        f"verdicts), below confidence {report['below_confidence']}, over the cap {report['over_cap']}"
        + (f"; ties broken by probability: {report['ties_broken']}" if report["ties_broken"] else ""),
        "position consistency: " + ("—" if consistency is None else f"{consistency:.1%}")
        + ", mean probability of kept pairs: " + ("—" if mean_p is None else f"{mean_p:.3f}"),
        f"wrote {Path(out_dir) / PAIRS_FILE} (train with: bridle dpo --data {Path(out_dir) / PAIRS_FILE})",
    ]
    return "\n".join(lines)
