"""`bridle eval`: answers from several models (generated or read from files) on the same prompts, judged in pairs.

    prompts ──► answers per model ──► judge.compare for every pair of models ──► win rates, ratings, lengths, RM scores

Every pair of models (a, b), a listed first, is judged on every prompt with one `Judge` (an LLM judge sees both
orders). A verdict's outcome is a's result: 1.0 win, 0.5 tie, 0.0 loss; an unparsed verdict (winner None) is
counted and left out of every rate, never guessed. Per pair: win rate with its bootstrap interval, tie rate,
position-inconsistency rate (LLM judges), length-controlled win rate (lengths in characters, as AlpacaEval). With
three or more models: Bradley-Terry ratings on the Elo scale from all verdicts. Per model: answer length stats and,
with a reward model, its mean score with an interval.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridle.data.chat import Prompt
from bridle.data.prompts import PromptRow, load_prompt_dataset
from bridle.data.sources import load_rows
from bridle.errors import ConfigError, DataError
from bridle.eval.ratings import bradley_terry_ratings
from bridle.eval.stats import length_stats, mean_interval
from bridle.eval.winrate import length_controlled_win_rate, win_rate
from bridle.feedback.judge_spec import JUDGE_HINT, build_judge  # noqa: F401  (re-exported)
from bridle.feedback.judges import Judge, PairVerdict, summarize_pairs

REFERENCE = "reference"  # the contestant name of the data's reference answers (--against-reference)
OUTCOME = {"A": 1.0, "B": 0.0, "tie": 0.5}  # model a's result for each winner


# ---- prompts and answers -------------------------------------------------------------------------------------


def load_eval_prompts(path: str | Path, *, limit: int = 0) -> list[PromptRow]:
    """The prompt rows of an eval set: anything `load_prompt_dataset` reads (AlpacaEval "instruction", Arena-Hard
    "prompt", ...), and MT-bench rows {"turns": [...]}, whose first turn is the prompt (single-turn evaluation)."""
    rows = load_rows(path)
    first = rows[0].value if rows else None
    if isinstance(first, Mapping) and isinstance(first.get("turns"), list) and "prompt" not in first:
        out = []
        for raw in rows:
            turns = raw.value.get("turns") if isinstance(raw.value, Mapping) else None
            if not (isinstance(turns, list) and turns and isinstance(turns[0], str)):
                raise DataError('an MT-bench row needs "turns", a list of texts.', source=str(path), row=raw.row,
                                field="turns")
            out.append(PromptRow(turns[0], {k: v for k, v in raw.value.items() if k != "turns"}, str(path), raw.row))
            if 0 < limit <= len(out):
                break
        return out
    return load_prompt_dataset(path, limit=limit)[0]


def prompt_key(prompt: Prompt) -> str:
    """A prompt as a hashable key, to match generation files to prompts."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def read_generations(path: str | Path) -> list[tuple[Prompt, str]]:
    """(prompt, output) of every row {"prompt", "output"} of a generations file (e.g. a generations.jsonl written by
    `bridle eval`, or AlpacaEval's model outputs with "instruction" as the prompt)."""
    pairs = []
    for raw in load_rows(path):
        value = raw.value
        prompt = value.get("prompt", value.get("instruction")) if isinstance(value, Mapping) else None
        output = value.get("output") if isinstance(value, Mapping) else None
        if prompt is None or not isinstance(output, str):
            raise DataError('a generations row needs "prompt" (or "instruction") and "output" (text).',
                            source=str(path), row=raw.row)
        pairs.append((prompt, output))
    if not pairs:
        raise DataError("no generations.", source=str(path))
    return pairs


def align_generations(path: str | Path, prompts: Sequence[Prompt]) -> list[str]:
    """The outputs of a generations file in the order of `prompts`, matched by prompt text."""
    by_prompt = {prompt_key(p): o for p, o in read_generations(path)}
    missing = [i for i, p in enumerate(prompts) if prompt_key(p) not in by_prompt]
    if missing:
        raise DataError(f"{len(missing)} of {len(prompts)} prompts have no output here, e.g. prompt "
                        f"{missing[0]}: {str(prompts[missing[0]])[:80]!r}.", source=str(path),
                        hint="Every generations file must answer the same prompts (matched by prompt text).")
    return [by_prompt[prompt_key(p)] for p in prompts]


def generate_answers(model_path: str, prompts: Sequence[Prompt], *, max_new_tokens: int, temperature: float = 0.0,
                     chat_template: str = "auto", seed: int = 0, batch_size: int = 8, progress: bool = False,
                     journal: Any = None, name: str = "model") -> list[str]:
    """One answer per prompt from a causal LM (greedy at temperature 0), in chunks of `batch_size` prompts, chunk
    k sampled with seed + k. With a `journal` (generations.jsonl rows), answers of `name` already there are kept
    and each new one is written as its chunk finishes, so a killed run resumes and ends as an uninterrupted one."""
    from bridle.engine.logging import task_progress
    from bridle.rollout.answers import AnswerGenerator

    done: dict[int, str] = {}
    if journal is not None:
        for row in journal:
            i = row["prompt_index"]
            if row["model"] == name and i < len(prompts):
                if prompt_key(row["prompt"]) != prompt_key(prompts[i]):
                    raise DataError(f"row for {name}, prompt {i} answers another prompt ({str(row['prompt'])[:60]!r});"
                                    " the prompts changed since this output dir was written.", source=str(journal.path),
                                    hint="Pass --overwrite, or another --output-dir.")
                done[i] = row["output"]
    if len(done) < len(prompts):
        generator = AnswerGenerator.load(model_path, chat_template=chat_template)
        with task_progress(f"answers of {name}", len(prompts), show=progress) as bar:
            bar.advance(bar.task_ids[0], len(done))
            for chunk, start in enumerate(range(0, len(prompts), batch_size)):
                idx = [i for i in range(start, min(len(prompts), start + batch_size))]
                if all(i in done for i in idx):
                    continue
                outputs = generator.answer([prompts[i] for i in idx], max_new_tokens=max_new_tokens,
                                           temperature=temperature, seed=seed + chunk, batch_size=batch_size)
                for i, output in zip(idx, outputs):
                    if i not in done:
                        done[i] = output
                        if journal is not None:
                            journal.write({"prompt_index": i, "model": name, "prompt": prompts[i], "output": output})
                        bar.advance(bar.task_ids[0], 1)
    return [done[i] for i in range(len(prompts))]


# ---- judges --------------------------------------------------------------------------------------------------

def judge_pair(judge: Judge, prompts: Sequence[Prompt], answers_a: Sequence[str], answers_b: Sequence[str], *,
               references: Sequence[str] | None = None, chunk: int = 8, on_chunk: Any = None,
               done: Mapping[int, PairVerdict] | None = None, on_verdict: Any = None) -> list[PairVerdict]:
    """`judge.compare` over the prompts in chunks of `chunk` (for a progress bar: `on_chunk(n)` after each).
    Prompts in `done` (index → verdict, from an earlier run) are not judged again; `on_verdict(i, verdict)` is
    called for each new verdict as soon as its chunk is judged (to write it to disk)."""
    done = done or {}
    verdicts: dict[int, PairVerdict] = dict(done)
    todo = [i for i in range(len(prompts)) if i not in done]
    if on_chunk is not None and len(done):
        on_chunk(len(prompts) - len(todo))
    for start in range(0, len(todo), chunk):
        idx = todo[start:start + chunk]
        refs = [references[i] for i in idx] if references is not None else None
        found = judge.compare([prompts[i] for i in idx], [answers_a[i] for i in idx], [answers_b[i] for i in idx],
                              **({"references": refs} if refs is not None else {}))
        for i, verdict in zip(idx, found):
            verdicts[i] = verdict
            if on_verdict is not None:
                on_verdict(i, verdict)
        if on_chunk is not None:
            on_chunk(len(idx))
    return [verdicts[i] for i in range(len(prompts))]


def verdict_row(i: int, a: str, b: str, v: PairVerdict) -> dict[str, Any]:
    """One line of verdicts.jsonl: the verdict of models a (answers_a) and b on prompt i."""
    return {"prompt_index": i, "model_a": a, "model_b": b, "winner": v.winner,
            "winner_model": {"A": a, "B": b}.get(v.winner or "", v.winner),
            "outcome": OUTCOME.get(v.winner) if v.winner else None, "verdicts": list(v.verdicts),
            "position_consistent": v.position_consistent, "probabilities": list(v.probabilities),
            "raw": list(v.raw), "rationales": list(v.rationales)}


def verdict_from_row(row: Mapping[str, Any]) -> PairVerdict:
    """The `PairVerdict` a verdicts.jsonl line was written from (to resume a run)."""
    raw = tuple(row.get("raw") or ())
    return PairVerdict(row["winner"], tuple(row["verdicts"]), row["position_consistent"],
                       tuple(row.get("probabilities") or ()), raw, tuple(row.get("rationales") or ("",) * len(raw)))


# ---- the report ----------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What `evaluate` found: the report (JSON-ready) and the rows of generations.jsonl and verdicts.jsonl."""

    report: dict[str, Any]
    generations: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]


def _interval(pair: tuple[float, float]) -> list[float | None]:
    return [None if math.isnan(x) else x for x in pair]


def _number(x: float) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else float(x)


def pair_report(model_a: str, model_b: str, verdicts: Sequence[PairVerdict], len_a: Sequence[int],
                len_b: Sequence[int], *, resamples: int, seed: int) -> dict[str, Any]:
    """Win rate of model_a over model_b (ties half) with its interval, tie rate, position inconsistency, unparsed
    count and length-controlled win rate, over the verdicts that were read."""
    parsed = [i for i, v in enumerate(verdicts) if v.winner is not None]
    outcomes = [OUTCOME[verdicts[i].winner] for i in parsed]
    counts = summarize_pairs(verdicts)
    wr = win_rate(outcomes, resamples=resamples, seed=seed)
    lc = length_controlled_win_rate(outcomes, [len_a[i] for i in parsed], [len_b[i] for i in parsed],
                                    resamples=resamples, seed=seed)
    return {"model_a": model_a, "model_b": model_b, "prompts": len(verdicts), "judged": wr.n,
            "unparsed": counts["unparsed_pairs"], "wins": wr.wins, "ties": wr.ties, "losses": wr.losses,
            "win_rate": _number(wr.win_rate), "win_rate_interval": _interval(wr.interval),
            "tie_rate": _number(wr.tie_rate), "position_inconsistency_rate": counts["position_inconsistency_rate"],
            "lc_win_rate": _number(lc.lc_win_rate), "lc_win_rate_interval": _interval(lc.interval),
            "confidence": wr.confidence}


def evaluate(prompts: Sequence[Prompt], answers: Mapping[str, Sequence[str]], judge: Judge, *,
             reward_model: Any = None, references: Sequence[str] | None = None,
             log_ratios: Mapping[str, Sequence[float]] | None = None, log_ratio_note: str = "",
             resamples: int = 1000, seed: int = 0, judge_chunk: int = 8, progress: bool = False,
             verdict_journal: Any = None) -> Evaluation:
    """Judge every pair of models (in the order of `answers`) on every prompt; see the module docstring.

    `references`: reference answers shown to the judge (templates with {reference}; rule judges' reference
    column). `log_ratios`: per model, its sequence log-ratios to a reference model (`bridle.eval.kl`), reported
    as mean with interval. `verdict_journal`: a `Journal` of verdicts.jsonl rows; pairs already in it are not
    judged again and new ones are written to it as they are made."""
    from bridle.engine.logging import task_progress

    names = list(answers)
    if len(names) < 2:
        raise ConfigError("an evaluation needs at least two sets of answers to compare.")
    lengths = {name: [len(a) for a in answers[name]] for name in names}
    pairs = list(itertools.combinations(names, 2))
    verdict_rows: list[dict[str, Any]] = []
    pair_reports, battles = [], []
    with task_progress("judging", len(pairs) * len(prompts), show=progress) as bar:
        for a, b in pairs:
            done = {}
            if verdict_journal is not None:
                done = {r["prompt_index"]: verdict_from_row(r) for r in verdict_journal
                        if (r["model_a"], r["model_b"]) == (a, b) and r["prompt_index"] < len(prompts)}

            def write(i: int, v: PairVerdict, a: str = a, b: str = b) -> None:
                if verdict_journal is not None:
                    verdict_journal.write(verdict_row(i, a, b, v))

            verdicts = judge_pair(judge, prompts, answers[a], answers[b], references=references, chunk=judge_chunk,
                                  on_chunk=lambda n: bar.advance(bar.task_ids[0], n), done=done, on_verdict=write)
            pair_reports.append(pair_report(a, b, verdicts, lengths[a], lengths[b], resamples=resamples, seed=seed))
            for i, v in enumerate(verdicts):
                verdict_rows.append(verdict_row(i, a, b, v))
                if v.winner is not None:
                    battles.append((a, b, OUTCOME[v.winner]))
    scores: dict[str, list[float]] = {}
    if reward_model is not None:
        for name in names:
            scores[name] = reward_model.score(list(prompts), list(answers[name]), progress=progress)
    models = {}
    for name in names:
        stats = length_stats(lengths[name])
        entry: dict[str, Any] = {"answers": len(answers[name]), "length_chars": {
            "mean": _number(stats.mean), "median": _number(stats.median), "p90": _number(stats.p90),
            "min": _number(stats.min), "max": _number(stats.max)}}
        if name in scores:
            m = mean_interval(scores[name], resamples=resamples, seed=seed)
            entry["reward"] = {"mean": _number(m.mean), "interval": _interval(m.interval), "n": m.n}
        if log_ratios and name in log_ratios:
            m = mean_interval(list(log_ratios[name]), resamples=resamples, seed=seed)
            entry["kl_to_reference"] = {"mean": _number(m.mean), "interval": _interval(m.interval), "n": m.n,
                                        "estimator": log_ratio_note}
        models[name] = entry
    report: dict[str, Any] = {"prompts": len(prompts), "models": models, "pairs": pair_reports,
                              "judge": getattr(judge, "name", type(judge).__name__), "resamples": resamples,
                              "seed": seed, "judge_saw_references": references is not None}
    if len(names) >= 3:
        ratings = bradley_terry_ratings(battles, models=names, resamples=resamples, seed=seed)
        report["ratings"] = {"battles": ratings.battles, "confidence": ratings.confidence,
                             "elo": {n: _number(ratings.ratings[n]) for n in names},
                             "intervals": {n: _interval(ratings.intervals[n]) for n in names}}
    generation_rows = [{"prompt_index": i, "model": name, "prompt": p, "output": answers[name][i],
                        **({"reward": scores[name][i]} if name in scores else {}),
                        **({"log_ratio": log_ratios[name][i]} if log_ratios and name in log_ratios else {})}
                       for name in names for i, p in enumerate(prompts)]
    return Evaluation(report, generation_rows, verdict_rows)


def write_evaluation(evaluation: Evaluation, output_dir: str | Path) -> Path:
    """report.json, generations.jsonl and verdicts.jsonl in `output_dir`, each replaced whole (written beside, then
    renamed), so a kill leaves either the old file or the new one."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"report.json": json.dumps(evaluation.report, indent=1, ensure_ascii=False) + "\n"}
    for name, rows in (("generations", evaluation.generations), ("verdicts", evaluation.verdicts)):
        texts[f"{name}.jsonl"] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    for name, text in texts.items():
        partial = out / f".{name}.partial"
        partial.write_text(text, encoding="utf-8")
        partial.replace(out / name)
    return out


def print_report(report: Mapping[str, Any], console: Any) -> None:
    """The report as rich tables: pairs, ratings (3+ models) and models."""
    from rich.table import Table

    from bridle.eval.format import pct
    from bridle.eval.format import pct_interval as ci

    pairs = Table(title=f"model a vs model b on {report['prompts']} prompts, judge {report['judge']} (rates in %)")
    human = any("human_win_rate" in p for p in report["pairs"])
    for col in ("a", "b", "win", "95% CI", "tie", "incons.", "unparsed", "LC win") + (("people", "95% CI") if human
                                                                                     else ()):
        pairs.add_column(col, justify="left" if col in ("a", "b") else "right")
    for p in report["pairs"]:
        row = [p["model_a"], p["model_b"], pct(p["win_rate"]), ci(p["win_rate_interval"]), pct(p["tie_rate"]),
               pct(p["position_inconsistency_rate"]), str(p["unparsed"]), pct(p["lc_win_rate"])]
        if human:
            row += [pct(p.get("human_win_rate")), ci(p.get("human_win_rate_interval", [None, None]))]
        pairs.add_row(*row)
    console.print(pairs)
    if "ratings" in report:
        ratings = Table(title=f"Bradley-Terry ratings (Elo scale, {report['ratings']['battles']} battles)")
        for col in ("model", "rating", "95% CI"):
            ratings.add_column(col, justify="left" if col == "model" else "right")
        for name, elo in sorted(report["ratings"]["elo"].items(), key=lambda kv: -(kv[1] or 0)):
            low, high = report["ratings"]["intervals"][name]
            ratings.add_row(name, f"{elo:.0f}", "—" if low is None else f"[{low:.0f}, {high:.0f}]")
        console.print(ratings)
    models = Table(title="answers")
    extras = [(key, title) for key, title in (("reward", "reward"), ("kl_to_reference", "KL to ref."))
              if any(key in m for m in report["models"].values())]
    for col in ("model", "mean chars", "median", "p90") + tuple(c for _, t in extras for c in (t, "95% CI")):
        models.add_column(col, justify="left" if col == "model" else "right")
    for name, m in report["models"].items():
        length = m["length_chars"]
        row = [name, f"{length['mean']:.1f}", f"{length['median']:.0f}", f"{length['p90']:.0f}"]
        for key, _ in extras:
            value = m.get(key, {"mean": None, "interval": [None, None]})
            low, high = value["interval"]
            row += ["—" if value["mean"] is None else f"{value['mean']:.3f}",
                    "—" if low is None else f"[{low:.3f}, {high:.3f}]"]
        models.add_row(*row)
    console.print(models)
