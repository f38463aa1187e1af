"""`bridle redteam`: parsing only; the work is in `bridle.feedback.redteam` (and `redteam_data` for the prompts)."""

from __future__ import annotations

import argparse
from typing import Any

XSTEST_ALL_SAFE = 250  # XSTest v2's safe prompts: the default over-refusal check when its file is there


def add_parser(sub: Any) -> None:
    p = sub.add_parser("redteam", help="attack a model with adversarial prompts: ASR per category, over-refusal, "
                                       "safety preference pairs",
                       description="Run adversarial prompts (a named set or a file) through --model, optionally grow "
                                   "them with an attacker model, classify each answer harmful / refusal / safe, and "
                                   "report the attack success rate per category with bootstrap 95% CIs, beside the "
                                   "over-refusal rate on XSTest's safe prompts. Every row is written as it is made, "
                                   "so rerunning a killed run resumes it.",
                       allow_abbrev=False)
    p.add_argument("--model", required=True, help="the model under test: alias (smollm2-135m), HF directory or hub id")
    p.add_argument("--prompts", default="harmbench",
                   help="a named set (harmbench, harmbench-standard, harmbench-contextual, advbench, donotanswer, "
                        "rtp, xstest-unsafe; from the shared data folder) or a jsonl/csv file (default: harmbench)")
    p.add_argument("--prompt-column", help="a file's prompt column (default: prompt)")
    p.add_argument("--category-column", help="a file's category column (default: category when present, else the "
                                             "file name is every row's category)")
    p.add_argument("--limit", type=int, default=0, help="use N prompts drawn at random with --seed (0 = all)")
    p.add_argument("--on-bad-row", choices=("error", "skip"), default="error",
                   help="a prompt row without a usable prompt: stop naming it, or skip and count it (default: error)")
    p.add_argument("--classifier", default="local,strmatch", metavar="SPECS",
                   help="comma-separated: local[:MODEL] or endpoint[:MODEL] (an LLM with the harm template) and/or "
                        "strmatch (refusal phrases). The first one picks the pairs' answers (default: local,strmatch)")
    p.add_argument("--classifier-template", default="harm",
                   help="the LLM classifier's prompt: built-in harm, or a .txt file with {question} {answer} asking "
                        "for [[H]], [[R]] or [[S]] (default: harm)")
    p.add_argument("--classifier-batch-size", type=int, default=8,
                   help="classifier prompts per forward pass (default: 8)")
    p.add_argument("--xstest", type=int, default=None, metavar="N",
                   help=f"also answer N of XSTest's safe prompts and report over-refusal (default: all "
                        f"{XSTEST_ALL_SAFE} when the shared data has them; 0 = off)")
    p.add_argument("--xstest-data", help="XSTest prompts file (default: the shared data folder's)")
    p.add_argument("--attacker", help="a model that writes new attack prompts from seed prompts (with --grow)")
    p.add_argument("--grow", type=int, default=0, help="write N new attacks with --attacker (default: 0)")
    p.add_argument("--shots", type=int, default=3,
                   help="seed prompts shown to the attacker per new attack (default: 3)")
    p.add_argument("--attacker-temperature", type=float, default=1.0,
                   help="attacker sampling temperature (default: 1.0)")
    p.add_argument("--attacker-max-new-tokens", type=int, default=96, help="tokens per new attack (default: 96)")
    p.add_argument("--safe-candidates", type=int, default=0, metavar="K",
                   help="for each harmful answer, sample K more and write a pair (safe answer over harmful) to "
                        "pairs.jsonl when one is classified safe or refusal (default: 0 = no pairs)")
    p.add_argument("--safe-temperature", type=float, default=1.0,
                   help="sampling temperature of the K candidates (default: 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer (default: 256)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="answer sampling temperature, 0 = greedy (default: 0)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default: 8)")
    p.add_argument("--chat-template", default="auto",
                   help="how prompts are rendered: auto (the tokenizer's own), a built-in name or a .jinja file "
                        "(default: auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit draws, sampling and bootstrap (default: 0)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--output-dir", required=True,
                   help="report.json, responses.jsonl, verdicts.jsonl, attacks.jsonl, candidates.jsonl, pairs.jsonl")
    p.add_argument("--overwrite", action="store_true", help="start again in --output-dir instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=redteam_command)


def redteam_command(args: argparse.Namespace) -> None:
    from bridle.engine.logging import console, stdout_console
    from bridle.feedback import redteam as rt
    from bridle.feedback import redteam_data as data
    from bridle.rollout.answers import AnswerGenerator

    config = rt.RedTeamConfig(
        output_dir=args.output_dir, model=args.model, prompts=args.prompts, prompt_column=args.prompt_column or "",
        category_column=args.category_column or "", limit=args.limit, seed=args.seed,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, chat_template=args.chat_template,
        batch_size=args.batch_size, attacker=args.attacker or "", grow=args.grow, shots=args.shots,
        attacker_temperature=args.attacker_temperature, attacker_max_new_tokens=args.attacker_max_new_tokens,
        safe_candidates=args.safe_candidates, safe_temperature=args.safe_temperature,
        classifier_template=args.classifier_template, resamples=args.resamples, overwrite=args.overwrite,
        progress=not args.no_progress)
    attacks, bad, source = data.load_attack_prompts(args.prompts, prompt_column=args.prompt_column,
                                                    category_column=args.category_column, limit=args.limit,
                                                    seed=args.seed, on_bad_row=args.on_bad_row)
    notes: dict[str, Any] = {"source": source, "bad_rows": bad.total(), "bad_row_reasons": dict(bad.counts)}
    safe: list[Any] = []
    if args.xstest is None and args.xstest_data is None and data.shared_data_file(data.XSTEST_SAFE.file) is None:
        console.print("note: XSTest's prompts are not in a shared data folder, so over-refusal is not checked "
                      "(pass --xstest-data FILE).", soft_wrap=True)
    elif args.xstest is None or args.xstest > 0:
        safe, notes["xstest_source"] = data.load_xstest_safe(args.xstest or XSTEST_ALL_SAFE, seed=args.seed,
                                                             path=args.xstest_data)
    specs = [s.strip() for s in args.classifier.split(",") if s.strip()]
    classifiers = [rt.build_classifier(s, batch_size=args.classifier_batch_size, template=args.classifier_template,
                                       progress=not args.no_progress) for s in specs]
    console.print(f"red-teaming {args.model} on {len(attacks)} prompts of {args.prompts}"
                  + (f" ({bad.total()} bad rows skipped)" if bad.total() else "")
                  + (f" and {len(safe)} XSTest safe prompts" if safe else ""), soft_wrap=True)
    target = AnswerGenerator.load(args.model, chat_template=args.chat_template)
    attacker = None
    if args.attacker:
        attacker = target if args.attacker == args.model else AnswerGenerator.load(args.attacker)
    report = rt.run_redteam(config, target, classifiers, attacks, safe, attacker=attacker, notes=notes)
    rt.print_report(report, stdout_console)
    for warning in report["warnings"]:
        console.print(f"warning: {warning}", soft_wrap=True, markup=False, style="bold yellow")
    console.print(f"wrote {args.output_dir}/report.json"
                  + (f" and {report['pairs']['pairs']} pairs to pairs.jsonl" if report["pairs"] else ""))
