"""`bridle curate`: parsing only; the work is in `bridle.feedback.curate`."""

from __future__ import annotations

import argparse
from typing import Any

from bridle.feedback.curate import BOUNDS


def add_parser(sub: Any) -> None:
    p = sub.add_parser("curate", help="choose a small SFT set from a large pool by quality, diversity and length "
                                      "(LIMA)",
                       description="Read SFT rows (any format `bridle sft` reads) from every --data, drop rows outside "
                                   "the length bounds, score the rest (--score), drop near-duplicate prompts keeping "
                                   "the better-scored, cluster the prompts and pick --size rows spread over the "
                                   "clusters, best-scored first in each. Writes curated.jsonl (the chosen input rows, "
                                   "trainable by `bridle sft` as they are), report.json (every row: kept or why not) "
                                   "and scores.jsonl (scores as they are made; a killed run resumes from it).",
                       allow_abbrev=False)
    p.add_argument("--data", action="append", required=True, metavar="FILE",
                   help="a pool file or hub id: alpaca, Self-Instruct, prompt/completion, messages ... (repeat)")
    p.add_argument("--size", type=int, required=True, metavar="N", help="how many examples to keep")
    p.add_argument("--output-dir", required=True, help="write curated.jsonl, report.json and scores.jsonl here")
    p.add_argument("--score", default="length", metavar="SPEC",
                   help="quality score: length (answer characters; Zhao et al. 2024 found longest-first a strong "
                        "baseline), none, rm:DIR, judge:local[:MODEL], judge:endpoint[:MODEL] (1-10 rubric grades), "
                        "rule:NAME (default: length)")
    for name, (part, unit, side) in BOUNDS.items():
        what = ("maximum tokens of the whole example as `bridle sft` tokenizes it, chat template included (= sft's "
                "--max-length: nothing kept is truncated)") if part == "example" else f"{side}imum {part} {unit}"
        p.add_argument("--" + name.replace("_", "-"), type=int, default=0, dest=name, metavar="N",
                       help=f"{what} (default: 0 = none)")
    p.add_argument("--tokenizer", default="smollm2-135m",
                   help="counts tokens for the token bounds: alias, HF directory or hub id; the model you will "
                        "train (default: smollm2-135m)")
    p.add_argument("--chat-template", default="auto",
                   help="the template --max-tokens renders examples with, as `bridle sft --chat-template` "
                        "(default: auto, the tokenizer's own)")
    p.add_argument("--dedup-threshold", type=float, default=0.7,
                   help="prompts whose word-shingle Jaccard similarity is at least this are near duplicates; the "
                        "better-scored is kept (default: 0.7)")
    p.add_argument("--no-dedup", action="store_true", help="keep near-duplicate prompts")
    p.add_argument("--shingle-size", type=int, default=3, help="words per shingle for --dedup-threshold (default: 3)")
    p.add_argument("--clusters", type=int, default=0,
                   help="prompt clusters to spread the picks over (k-center on TF-IDF); 1 = best-scored overall "
                        "(default: 0 = size / 4, rounded up)")
    p.add_argument("--seed", type=int, default=0, help="draws the first cluster center (default: 0)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per scoring call (default: 8)")
    p.add_argument("--on-bad-row", choices=("error", "skip"), default="error",
                   help="a row `bridle sft` cannot read: stop, or skip it and list it in the report (default: error)")
    p.add_argument("--rescore", action="store_true", help="discard the scores in scores.jsonl and score again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=curate_command)


def curate_command(args: argparse.Namespace) -> None:
    from bridle.engine.logging import console, stdout_console
    from bridle.feedback import curate

    options = curate.Options(size=args.size, bounds={name: getattr(args, name) for name in BOUNDS},
                             dedup_threshold=None if args.no_dedup else args.dedup_threshold,
                             shingle_size=args.shingle_size, clusters=args.clusters, seed=args.seed)
    report = curate.curate_files(args.data, args.output_dir, options, score=args.score, tokenizer=args.tokenizer,
                                 chat_template=args.chat_template, batch_size=args.batch_size,
                                 on_bad_row=args.on_bad_row, rescore=args.rescore, progress=not args.no_progress)
    curate.print_report(report, stdout_console)
    console.print(f"wrote {args.output_dir}/curated.jsonl ({report['kept']} examples) and report.json")
