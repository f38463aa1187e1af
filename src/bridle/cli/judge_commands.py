"""`bridle judge-check`: parsing only; the work is in `bridle.eval.judge_check`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("judge-check", help="how far can you trust a judge: agreement with labelled data, kappa, bias",
                       description="Run a judge on a labelled set and report accuracy and Cohen's kappa with "
                                   "bootstrap 95% intervals, the confusion matrix and unparsed verdicts; for "
                                   "pairwise, the position bias measured by swapping the answers' order.",
                       allow_abbrev=False)
    p.add_argument("--task", required=True, choices=("refusal", "pairwise"),
                   help="refusal: classify responses as refusal / compliance (XSTest or PyRIT labels); pairwise: "
                        "pick the better of two answers (AlpacaEval GPT-4 annotations)")
    p.add_argument("--data", help="labelled jsonl(.gz) (default: the task's file in ../shared/data when present)")
    p.add_argument("--limit", type=int, default=0, help="judge N rows drawn at random with --seed (0 = all)")
    p.add_argument("--judge", default="local",
                   help="local[:MODEL] (a causal LM; default the embedded SmolLM2-135M) or endpoint[:MODEL] "
                        "(OpenAI-compatible, URL from BRIDLE_JUDGE_BASE_URL) (default: local)")
    p.add_argument("--template", default=None,
                   help="judge prompt file (default: the built-in refusal / pairwise template)")
    p.add_argument("--max-answer-chars", type=int, default=0,
                   help="cut each answer to N characters before judging (0 = whole answers)")
    p.add_argument("--batch-size", type=int, default=8, help="judge prompts per forward pass (default: 8)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit draw and the bootstrap (default: 0)")
    p.add_argument("--output", help="write the report as JSON here")
    p.set_defaults(func=judge_check_command)


def judge_check_command(args: argparse.Namespace) -> None:
    from bridle.data import load_rows
    from bridle.errors import ConfigError
    from bridle.eval import judge_check as jc
    from bridle.feedback.judge_spec import build_backend
    from bridle.feedback.judges import PairwiseJudge

    data = args.data
    if data is None:
        default = jc.default_data(args.task)
        if default is None:
            raise ConfigError(f"no --data given and the default {jc.DEFAULT_DATA[args.task]} is not in a shared data "
                              "folder (set BRIDLE_SHARED_DATA, or run beside ../shared/data); pass --data FILE.")
        data = str(default)
    raw = load_rows(data)
    bad = next((r for r in raw if r.parse_error or not isinstance(r.value, dict)), None)
    if bad is not None:
        raise ConfigError(f"{data}, row {bad.row}: {bad.parse_error or 'not a JSON object'}.")
    rows = [r.value for r in raw]
    cut = (lambda s: s[:args.max_answer_chars]) if args.max_answer_chars > 0 else (lambda s: s)  # noqa: E731
    backend = build_backend(args.judge, batch_size=args.batch_size, progress=True)
    start = time.perf_counter()
    if args.task == "refusal":
        items = jc.sample(jc.refusal_items(rows, data), args.limit, args.seed)
        items = [jc.RefusalItem(i.prompt, cut(i.response), i.refusal) for i in items]
        judge = jc.ClassifierJudge(backend, args.template or "refusal")
        report = jc.check_refusal(judge, items, resamples=args.resamples, seed=args.seed)
        report["label_mapping"] = {"xstest": jc.XSTEST_REFUSAL, "pyrit": jc.PYRIT_REFUSAL}
    else:
        all_items, skipped = jc.pairwise_items(rows, data)
        items = jc.sample(all_items, args.limit, args.seed)
        items = [jc.PairItem(i.prompt, cut(i.answer_a), cut(i.answer_b), i.preference) for i in items]
        judge = PairwiseJudge(backend, args.template)
        report = jc.check_pairwise(judge, items, resamples=args.resamples, seed=args.seed)
        report["rows_without_reference"] = skipped
    report.update(data=str(data), judge=args.judge, limit=args.limit, seed=args.seed,
                  judge_seconds=round(time.perf_counter() - start, 2))
    jc.print_report(report, title=f"judge {args.judge} on {Path(data).name} ({args.task})")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1))
