"""`bridle constitute`: parsing only; the work is in `bridle.feedback.constitute`."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("constitute", help="Constitutional AI: answer, critique and revise by a constitution",
                       description="Answer each prompt of --data with --model, then for --rounds rounds critique "
                                   "the answer against a principle drawn from --constitution and revise it (Bai et "
                                   "al. 2022). Writes sft.jsonl (prompt, final revision) for `bridle sft`, "
                                   "preferences.jsonl (revision over original) for `bridle dpo` / `bridle rm`, "
                                   "trace.jsonl with every critique and revision, and report.json. A killed run "
                                   "resumes where it stopped.", allow_abbrev=False)
    p.add_argument("--data", required=True, help="prompts: any prompt rows (prompt, messages, question, "
                                                 "instruction, ...)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N prompts (0 = all)")
    p.add_argument("--on-bad-row", choices=("error", "skip"), default="error",
                   help="a prompt row that cannot be read: stop with its location, or skip and count it "
                        "(default: error)")
    p.add_argument("--model", default="smollm2-135m",
                   help="the policy that answers, critiques and revises: alias, HF directory or hub id "
                        "(default: smollm2-135m, the embedded model)")
    p.add_argument("--critic-model", help="write the critiques with this model instead (the policy still answers "
                                          "and revises)")
    p.add_argument("--constitution", default="default",
                   help="a YAML file of principles, or `default`, the one shipped with Bridle (default: default)")
    p.add_argument("--rounds", type=int, default=1, help="critique → revision rounds per prompt (default: 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the principle drawn per prompt and round, and of sampling (default: 0)")
    p.add_argument("--max-new-tokens", type=int, default=256,
                   help="tokens per answer, critique and revision (default: 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature, 0 = greedy (default: 0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1.0)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="prompts per generate call; rows are written a batch at a time (default: 8)")
    p.add_argument("--chat-template", default="auto",
                   help="how conversations are rendered: auto (the tokenizer's own), a built-in (chatml, llama3, "
                        "zephyr, alpaca, plain) or a .jinja file (default: auto)")
    p.add_argument("--output-dir", required=True,
                   help="write trace.jsonl, sft.jsonl, preferences.jsonl, report.json and settings.json here")
    p.add_argument("--overwrite", action="store_true",
                   help="start again, deleting this command's files in --output-dir (default: resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=constitute_command)


def constitute_command(args: argparse.Namespace) -> None:
    import json

    from bridle.data.prompts import load_prompt_dataset
    from bridle.engine.logging import console, stdout_console
    from bridle.errors import ConfigError
    from bridle.feedback.constitute import Settings, run_constitute
    from bridle.feedback.constitution import load_constitution
    from bridle.rollout.answers import AnswerGenerator

    if args.limit < 0:
        raise ConfigError("--limit must be >= 0.")
    settings = Settings(rounds=args.rounds, seed=args.seed, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_p=args.top_p, batch_size=args.batch_size)
    constitution = load_constitution(args.constitution)
    rows, loaded = load_prompt_dataset(args.data, on_bad_row=args.on_bad_row, limit=args.limit)
    console.print(loaded, markup=False)
    policy = AnswerGenerator.load(args.model, chat_template=args.chat_template)
    critic = None
    if args.critic_model and args.critic_model != args.model:
        critic = AnswerGenerator.load(args.critic_model, chat_template=args.chat_template)
    # not --limit: a rerun may extend a run to more prompts (each trace row is checked against its prompt)
    run_info = {"model": args.model, "critic_model": args.critic_model or args.model,
                "chat_template": args.chat_template, "data": args.data, "on_bad_row": args.on_bad_row}
    report = run_constitute([r.prompt for r in rows], policy, constitution, args.output_dir, settings=settings,
                            critic=critic, run_info=run_info, data_report=loaded, overwrite=args.overwrite,
                            progress=not args.no_progress,
                            note=lambda text: console.print(f"bridle: {text}", markup=False))
    refused = ", ".join(f"{n} {why}" for why, n in report["revisions_refused"].items()) or "none"
    stdout_console.print(f"{report['prompts']} prompts ({report['resumed_prompts']} resumed), "
                         f"{report['sft_rows']} SFT rows, {report['preference_rows']} preference rows; revisions "
                         f"kept {report['revisions_kept']}, refused: {refused}; {report['unrevised_prompts']} "
                         f"prompts unrevised, {report['unchanged_prompts']} unchanged, "
                         f"{report['empty_critiques']} empty critiques.", markup=False)
    console.print(f"wrote {args.output_dir}/sft.jsonl, preferences.jsonl, trace.jsonl and report.json "
                  f"(constitution {json.dumps(report['constitution']['name'])})", markup=False)
