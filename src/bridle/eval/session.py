"""One `bridle eval` run from its parsed flags: prompts → answers (generated or read) → KL to a reference →
judged pairs → report, with every generated answer and verdict written to the output dir as it is made.

A rerun with the same output dir and the same settings resumes: answers and verdicts already there are kept, the
rest is made. Different settings are refused (the rows would mix two evaluations) unless --overwrite starts over.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bridle.errors import ConfigError
from bridle.eval import evaluate as ev

SETTINGS_FILE = "eval_settings.json"
# Flags that change what the rows hold; the rest (progress, resamples, batch sizes) can change between runs.
SETTINGS_KEYS = ("model", "generations", "against_reference", "reference_column", "data", "limit", "judge",
                 "judge_template", "judge_sees_reference", "max_new_tokens", "temperature", "seed", "chat_template")


def named(values: list[str], flag: str) -> list[tuple[str, str]]:
    """NAME=VALUE pairs of a repeated flag; a ConfigError for a malformed one."""
    out = []
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise ConfigError(f"{flag} {value!r}: write {flag} NAME=PATH, e.g. {flag} base=smollm2-135m.")
        out.append((name, target))
    return out


def check_settings(out: Path, settings: dict[str, Any], *, overwrite: bool) -> None:
    """Refuse to resume an output dir written with other settings; with `overwrite`, clear its rows."""
    path = out / SETTINGS_FILE
    if overwrite:
        for name in (SETTINGS_FILE, "generations.jsonl", "verdicts.jsonl", "report.json"):
            (out / name).unlink(missing_ok=True)
    elif path.is_file():
        before = json.loads(path.read_text())
        changed = [k for k in SETTINGS_KEYS if before.get(k) != settings.get(k)]
        if changed:
            k = changed[0]
            raise ConfigError(f"{out} holds an evaluation with other settings ({k}: {before.get(k)!r} then, "
                              f"{settings.get(k)!r} now); its answers and verdicts would not match. Pass "
                              "--overwrite to start over, or another --output-dir.")
    elif (out / "verdicts.jsonl").exists() or (out / "generations.jsonl").exists():
        raise ConfigError(f"{out} holds answers or verdicts from an unknown evaluation (no {SETTINGS_FILE}). Pass "
                          "--overwrite to start over, or another --output-dir.")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1) + "\n")


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Everything `bridle eval` does; returns the report."""
    from bridle.engine.logging import console, stdout_console
    from bridle.feedback.journal import Journal

    models, files = named(args.model, "--model"), named(args.generations, "--generations")
    names = [n for n, _ in models + files] + ([ev.REFERENCE] if args.against_reference else [])
    if len(names) < 2:
        raise ConfigError(f"bridle eval compares at least two sets of answers, got {len(names)} "
                          f"({', '.join(names) or 'none'}). Pass --model NAME=PATH (or --generations NAME=FILE) "
                          "twice or more, or one of them with --against-reference to compare with the data's "
                          "reference answers.")
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must differ, got {', '.join(names)}"
                          + (f" ({ev.REFERENCE!r} is the reference answers' name)" if args.against_reference else "")
                          + ".")
    if args.limit < 0 or args.max_new_tokens < 1:
        raise ConfigError("--limit must be >= 0 and --max-new-tokens >= 1.")
    if args.kl_reference and not models:
        raise ConfigError("--kl-reference measures the --model models on their own answers; it needs at least one "
                          "--model (a generations file has no model to score).")
    needs_references = args.against_reference or args.judge_sees_reference
    if args.data:
        rows = ev.load_eval_prompts(args.data, limit=args.limit)
        prompts, columns = [r.prompt for r in rows], [r.columns for r in rows]
    elif models or needs_references:
        raise ConfigError("pass --data FILE: the prompts to generate answers for (or the reference answers to read).")
    else:
        prompts = [p for p, _ in ev.read_generations(files[0][1])]
        prompts = prompts[:args.limit] if args.limit > 0 else prompts
        columns = []
    references = None
    if needs_references:
        references = [c.get(args.reference_column) for c in columns]
        if not all(isinstance(r, str) for r in references):
            raise ConfigError(f"the data {args.data} has no text field {args.reference_column!r} in every row, so "
                              "there are no reference answers; name the reference field with --reference-column.")
    judge = ev.build_judge(args.judge, batch_size=args.judge_batch_size, template=args.judge_template,
                           progress=not args.no_progress)
    out = Path(args.output_dir) if args.output_dir else None
    if out is not None:
        check_settings(out, {k: getattr(args, k) for k in SETTINGS_KEYS}, overwrite=args.overwrite)
    generations = Journal(out / "generations.jsonl", lambda r: (r["model"], r["prompt_index"])) if out else None
    verdicts = Journal(out / "verdicts.jsonl", lambda r: (r["model_a"], r["model_b"], r["prompt_index"])) \
        if out else None
    for journal in (generations, verdicts):
        if journal is not None and journal.resumed:
            console.print(f"resuming: {journal.resumed} rows already in {journal.path}"
                          + (f" ({journal.torn_lines} cut-off line dropped)" if journal.torn_lines else ""))
    try:
        answers: dict[str, list[str]] = {}
        for name, path in files:
            answers[name] = ev.align_generations(path, prompts)
        for name, path in models:
            console.print(f"answering {len(prompts)} prompts with {name} ({path})")
            answers[name] = ev.generate_answers(path, prompts, max_new_tokens=args.max_new_tokens,
                                                temperature=args.temperature, chat_template=args.chat_template,
                                                seed=args.seed, batch_size=args.batch_size,
                                                progress=not args.no_progress, journal=generations, name=name)
        if args.against_reference:
            answers[ev.REFERENCE] = list(references or [])
        answers = {n: answers[n] for n in names}  # the order of the command line
        log_ratios = {}
        if args.kl_reference:
            from bridle.eval.kl import sequence_log_ratios

            for name, path in models:
                console.print(f"log-ratios of {name}'s answers to {args.kl_reference}")
                log_ratios[name] = sequence_log_ratios(path, args.kl_reference, prompts, answers[name],
                                                       chat_template=args.chat_template, batch_size=args.batch_size)
        note = ("KL(model ‖ reference), k1 estimate: answers sampled at temperature 1" if args.temperature == 1.0 else
                f"mean log-ratio of the model's answers (temperature {args.temperature}: not samples of the model, "
                "so not a KL estimate)")
        reward_model = None
        if args.reward_model:
            from bridle.feedback import RewardModel

            reward_model = RewardModel.load(args.reward_model)
        evaluation = ev.evaluate(prompts, answers, judge, reward_model=reward_model,
                                 references=references if args.judge_sees_reference else None,
                                 log_ratios=log_ratios, log_ratio_note=note, resamples=args.resamples,
                                 seed=args.seed, judge_chunk=args.judge_batch_size, progress=not args.no_progress,
                                 verdict_journal=verdicts)
    finally:
        for journal in (generations, verdicts):
            if journal is not None:
                journal.close()
    if args.human_verdicts:
        add_human_win_rates(evaluation.report, args.human_verdicts, resamples=args.resamples, seed=args.seed)
    evaluation.report.update(data=args.data, judge=args.judge, reward_model=args.reward_model or None,
                             kl_reference=args.kl_reference or None)
    ev.print_report(evaluation.report, stdout_console)
    if out is not None:
        ev.write_evaluation(evaluation, out)
        console.print(f"wrote {out / 'report.json'}, generations.jsonl and verdicts.jsonl")
    return evaluation.report


def add_human_win_rates(report: dict[str, Any], files: list[str], *, resamples: int, seed: int) -> None:
    """People's win rate (from `bridle label export --format verdicts` files) beside the judge's, for each of the
    report's pairs that people compared: `human_win_rate`, `human_win_rate_interval`, `human_verdicts`."""
    from bridle.data.sources import load_rows
    from bridle.errors import DataError
    from bridle.label.export import human_win_rates

    rows = []
    for path in files:
        for raw in load_rows(path):
            value = raw.value
            if not (isinstance(value, dict) and {"model_a", "model_b", "outcome"} <= set(value)):
                raise DataError('a human verdict row needs "model_a", "model_b" and "outcome" (as `bridle label '
                                'export --format verdicts` writes).', source=path, row=raw.row)
            rows.append(value)
    found = {(h["model_a"], h["model_b"]): h for h in human_win_rates(
        rows, order=[(p["model_a"], p["model_b"]) for p in report["pairs"]], resamples=resamples, seed=seed)}
    for pair in report["pairs"]:
        human = found.get((pair["model_a"], pair["model_b"]))
        if human is not None:
            pair.update(human_win_rate=human["win_rate"], human_win_rate_interval=human["interval"],
                        human_verdicts=human["n"])
