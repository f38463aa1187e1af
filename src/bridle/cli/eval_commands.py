"""`bridle eval`: parsing only; the work is in `bridle.eval.session` and `bridle.eval.evaluate`."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    ev = sub.add_parser("eval", help="compare models head to head with a judge: win rates, ratings, lengths",
                        description="Answer the prompts of --data with each --model (or read --generations), judge "
                                    "every pair of models on every prompt, and report win rates with 95% CIs, tie "
                                    "and position-inconsistency rates, length-controlled win rates, Bradley-Terry "
                                    "ratings (3+ models), answer lengths and reward-model scores.")
    ev.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="a model to generate answers with: alias, HF directory or hub id (repeat)")
    ev.add_argument("--generations", action="append", default=[], metavar="NAME=FILE",
                    help="read a model's answers from a jsonl of {prompt, output} rows instead (repeat)")
    ev.add_argument("--against-reference", action="store_true",
                    help="add the data's reference answers (--reference-column) as a contestant named 'reference'")
    ev.add_argument("--reference-column", default="output",
                    help="the data's reference-answer field (default: output, as AlpacaEval)")
    ev.add_argument("--data", help="prompts: AlpacaEval, Arena-Hard, MT-bench (first turn) or any prompt rows "
                                   "(default with --generations only: the prompts of the first file)")
    ev.add_argument("--limit", type=int, default=0, help="use only the first N prompts (0 = all)")
    ev.add_argument("--judge", default="local", metavar="SPEC",
                    help="local[:MODEL] (default: local, the embedded smollm2-135m), endpoint[:MODEL], rm:DIR, "
                         "rule:NAME")
    ev.add_argument("--judge-template", help="an LLM judge's pairwise template: built-in name or a .txt file")
    ev.add_argument("--judge-batch-size", type=int, default=8, help="judge prompts per forward pass (default: 8)")
    ev.add_argument("--reward-model", help="also report each model's mean reward (95%% CI) from this reward model")
    ev.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer (default: 256)")
    ev.add_argument("--temperature", type=float, default=0.0, help="sampling temperature, 0 = greedy (default: 0)")
    ev.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default: 0)")
    ev.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default: 8)")
    ev.add_argument("--chat-template", default="auto",
                    help="how the models' prompts are rendered: auto (their tokenizer's own), a built-in (chatml, "
                         "llama3, zephyr, alpaca, plain) or a .jinja file (default: auto)")
    ev.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    ev.add_argument("--judge-sees-reference", action="store_true",
                    help="show the judge the data's reference answer (--reference-column) beside each pair: the "
                         "built-in pairwise_reference template for LLM judges, the reference column for rules")
    ev.add_argument("--kl-reference", metavar="PATH",
                    help="also report each --model's sequence log-ratio to this model on its own answers (a KL "
                         "estimate at --temperature 1); same tokenizer required")
    ev.add_argument("--human-verdicts", action="append", default=[], metavar="FILE",
                    help="people's verdicts (`bridle label export --format verdicts`): their win rate for each pair "
                         "of models is reported beside the judge's (repeat)")
    ev.add_argument("--output-dir", help="write report.json, generations.jsonl and verdicts.jsonl here; answers and "
                                         "verdicts are written as they are made, and a rerun resumes")
    ev.add_argument("--overwrite", action="store_true",
                    help="start over in an --output-dir that holds an earlier evaluation")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> None:
    from bridle.eval.session import run_eval

    run_eval(args)
