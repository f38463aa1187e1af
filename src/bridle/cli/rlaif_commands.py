"""`bridle rlaif`: parsing only; the work is in `bridle.feedback.rlaif`."""

from __future__ import annotations

import argparse
from typing import Any

from bridle.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("rlaif", help="label preference pairs with an AI judge: k samples per prompt, judged in pairs",
                       description="Sample --k candidates per prompt of --data from --policy, judge every pair of "
                                   "distinct candidates with --judge (an LLM judge sees both orders, Lee et al. "
                                   "2023's position debiasing), and write preference rows {prompt, chosen, "
                                   "rejected, probability, agreement} to OUTPUT_DIR/pairs.jsonl for `bridle dpo` "
                                   "or `bridle rm`. A killed run resumes where it stopped.", allow_abbrev=False)
    p.add_argument("--data", required=True, help="prompts: any prompt rows (Alpaca, Self-Instruct, prompt, "
                                                 "question, messages ...), a file or hub id")
    p.add_argument("--output-dir", required=True, help="writes pairs.jsonl, judgements.jsonl, report.json here")
    p.add_argument("--policy", default="smollm2-135m",
                   help="the model that samples candidates: alias, HF directory or hub id (default: smollm2-135m)")
    p.add_argument("--k", type=int, default=4, help="candidates sampled per prompt; k(k-1)/2 pairs (default: 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, > 0 (default: 1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default: 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per candidate (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; prompt i uses seed*100003+i (default: 0)")
    p.add_argument("--chat-template", default="auto",
                   help="how the policy's prompts are rendered: auto, a built-in (chatml, llama3, zephyr, alpaca, "
                        "plain) or a .jinja file (default: auto)")
    p.add_argument("--judge", default="local", metavar="SPEC",
                   help="local[:MODEL] (default: local, the embedded smollm2-135m), endpoint[:MODEL], rm:DIR, "
                        "rule:NAME")
    p.add_argument("--judge-template", help="an LLM judge's pairwise template: built-in name or a .txt file")
    p.add_argument("--judge-batch-size", type=int, default=8, help="judge prompts per forward pass (default: 8)")
    p.add_argument("--rationale", action="store_true",
                   help="an LLM judge writes its reasoning before the verdict; kept in the rows as 'rationales'")
    p.add_argument("--judge-max-new-tokens", type=int, default=512,
                   help="most tokens of a judge's reasoning or text reply (default: 512)")
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="keep a pair only when the judge's probability for the chosen answer (averaged over both "
                        "orders) is at least this; needs a judge with probabilities (default: 0, keep all)")
    p.add_argument("--max-pairs-per-prompt", type=int, default=0,
                   help="keep at most N pairs per prompt, the most confident first (default: 0, no cap)")
    p.add_argument("--ties", choices=("drop", "probability"), default="drop",
                   help="drop: ties (orders disagree, or the judge says tie) are dropped and counted; probability: "
                        "the order-averaged probability decides them when it leans either way (default: drop)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N prompts (0 = all)")
    p.add_argument("--on-bad-row", choices=("error", "skip"), default="error",
                   help="a prompt row that cannot be read stops the run (error) or is skipped and counted (skip)")
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming OUTPUT_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=rlaif_command)


def rlaif_command(args: argparse.Namespace) -> None:
    from bridle.data.prompts import load_prompt_dataset
    from bridle.engine.logging import console, stdout_console
    from bridle.feedback import rlaif
    from bridle.rollout.answers import AnswerGenerator

    if args.limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {args.limit}.")
    sampling = rlaif.Sampling(k=args.k, temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    rules = rlaif.PairFilter(min_confidence=args.min_confidence, max_pairs_per_prompt=args.max_pairs_per_prompt,
                             ties=args.ties)
    rows, data_report = load_prompt_dataset(args.data, on_bad_row=args.on_bad_row, limit=args.limit)
    judge = rlaif.build_rlaif_judge(args.judge, batch_size=args.judge_batch_size, template=args.judge_template,
                                    rationale=args.rationale, max_new_tokens=args.judge_max_new_tokens)
    rlaif.check_judge(judge, rules)
    console.print(f"sampling {args.k} candidates for each of {len(rows)} prompts with {args.policy}", markup=False)
    policy = AnswerGenerator.load(args.policy, chat_template=args.chat_template)
    fingerprint = {"policy": args.policy, "chat_template": args.chat_template, "judge": args.judge,
                   "judge_template": args.judge_template, "rationale": args.rationale,
                   "judge_max_new_tokens": args.judge_max_new_tokens}
    report = rlaif.run_rlaif(rows, policy, judge, args.output_dir, sampling=sampling, rules=rules,
                             fingerprint=fingerprint, overwrite=args.overwrite, progress=not args.no_progress,
                             data_report=data_report)
    stdout_console.print(data_report + "\n" + rlaif.format_report(report, args.output_dir), markup=False)
