"""DPO throughput and memory: Bridle against TRL's DPOTrainer on the same model, pairs and settings, in one run.

    python benchmarks/dpo.py [--steps N] [--warmup N] [--quick]

Prints ONE JSON line to stdout (progress goes to stderr). Model: the embedded SmolLM2-135M-Instruct, loaded by both
frameworks from the same HF directory. Data: hh-rlhf harmless-base test pairs from ../shared/data, normalized once by
Bridle into conversational {prompt, chosen, rejected} records (the shared text before the last "Assistant:" is the
prompt), keeping only pairs whose every sequence fits in MAX_LENGTH tokens so neither framework truncates and both
see identical tokens; written to a temporary jsonl in file order. Settings, identical for both: 4 pairs per step,
max length 256, sigmoid loss, β = 0.1, lr 1e-6 constant, AdamW, clipping at 1.0, no gradient checkpointing, no eval,
sequential batches, only the pairs the measured run trains on.

Variants: fp32 (TRL: default, a second reference model in memory; Bridle: reference log-probs in one pre-pass before
training, then no reference in memory), LoRA r=16 all-linear (TRL: adapter disabled for the reference in every step;
Bridle: pre-pass with the adapter disabled), Bridle bf16 autocast and Bridle padding-free. Every Bridle variant
runs prefix-shared (its default: one row per pair, the prompt once, in training and in the reference pre-pass)
except `bridle-fp32-plain` (--no-prefix-sharing: 2B right-padded rows). `prompt_token_share`: the prompts' share of
all tokens of the measured pairs (each response counted with its prompt), what prefix sharing can save.
tokens/s = real (non-pad) tokens of the measured optimizer steps, counted as the plain layout feeds them (the same
count for every variant and for TRL) / wall seconds of those steps (warm-up step, loading and tokenization excluded).
Bridle is also reported with its reference pre-pass charged to the run (`tokens_per_s_with_prepass`, the pre-pass
over exactly the pairs trained on): TRL computes the reference inside its steps, so that is the fair figure.
Peak memory = the child's peak RSS (resource.getrusage). `first_loss` is the loss of step 1 (policy = reference, so
log 2 = 0.6931 for both).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (helpers shared by the benchmarks)
    REPO,
    StepTime,
    bench_logger,
    peak_rss_gib,
    print_result,
    run_child_script,
    timed_engine,
    trl_step_timer,
)

HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
MODEL_ALIAS = "smollm2-135m"
BATCH, MAX_LENGTH, LR, BETA, SEED = 4, 256, 1e-6, 0.1, 0
VARIANTS = {"trl-fp32": ("trl", "fp32"), "bridle-fp32": ("bridle", "fp32"), "trl-lora": ("trl", "lora"),
            "bridle-lora": ("bridle", "lora"), "bridle-bf16": ("bridle", "bf16"),
            "bridle-padding-free": ("bridle", "padding_free"), "bridle-fp32-plain": ("bridle", "plain")}
log = bench_logger("dpo")


def build_records(model_dir: str, count: int) -> tuple[list[dict[str, Any]], float]:
    """The first `count` hh-rlhf harmless pairs (file order) whose chosen and rejected both fit in MAX_LENGTH, and
    the prompts' share of their tokens (chosen and rejected each counted with the prompt)."""
    from bridle.data import load_rows, normalize
    from bridle.data.tokenize import encode_prompt_completion
    from bridle.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir, max_length=MAX_LENGTH)
    records, _ = normalize(load_rows(str(HH)), "preference", on_bad_row="skip")
    kept, prompt_tokens, all_tokens = [], 0, 0
    for r in records:
        sides = [encode_prompt_completion({"prompt": r["prompt"], "completion": r[s]}, tokenizer)
                 for s in ("chosen", "rejected")]
        if all(len(ids) <= MAX_LENGTH for ids, _ in sides):
            kept.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
            prompt_tokens += sum(p for _, p in sides)
            all_tokens += sum(len(ids) for ids, _ in sides)
        if len(kept) == count:
            break
    return kept, prompt_tokens / max(1, all_tokens)


def summarize(step_times: list[StepTime], losses: list[float], warmup: int, extra: dict[str, Any]) -> dict[str, Any]:
    measured = step_times[warmup:]
    seconds, tokens = sum(t for t, _, _ in measured), sum(n for _, _, n in measured)
    return {"tokens_per_s": tokens / max(seconds, 1e-9), "peak_gib": peak_rss_gib(), "measured_tokens": tokens,
            "measured_seconds": seconds, "step_seconds": [round(t, 2) for t, _, _ in measured],
            "first_loss": losses[0] if losses else float("nan"), **extra}


def child_bridle(data: str, variant: str, steps: int, warmup: int, out_dir: str) -> dict[str, Any]:
    from bridle.engine.batches import BatchPlan
    from bridle.methods.dpo import DPO, DPOConfig
    from bridle.models import load_tokenizer, resolve_model

    config = DPOConfig(model=resolve_model(MODEL_ALIAS), data=data, output_dir=out_dir, max_length=MAX_LENGTH,
                       batch_size=BATCH, max_steps=warmup + steps, lr=LR, lr_schedule="constant", beta=BETA,
                       max_grad_norm=1.0, precision="bf16" if variant == "bf16" else "fp32", lora=variant == "lora",
                       padding_free=variant == "padding_free", prefix_sharing=variant != "plain",
                       log_every=10_000, progress=False, seed=SEED,
                       reference_cache="none")
    tokenizer = load_tokenizer(config.model, max_length=config.max_length)
    method = DPO(config, tokenizer)
    train_items, eval_items, _ = method.build_datasets()
    model = method.build_model()
    t0 = time.perf_counter()
    method.before_training(model, train_items, eval_items)
    prepass = time.perf_counter() - t0
    step_times: list[StepTime] = []
    losses: list[float] = []
    TimedEngine = timed_engine(step_times, losses, log, f"bridle {variant}", loss_digits=6)  # noqa: N806
    engine = TimedEngine(config, model, method, train_items, eval_items)
    engine.plan = BatchPlan(len(train_items), config.batch_size, seed=config.seed, shuffle=False)
    engine.fit()
    result = summarize(step_times, losses, warmup, {"prepass_seconds": round(prepass, 2)})
    # the pre-pass covered all (warmup + steps) batches; charge the measured steps their share of it
    share = prepass * steps / (warmup + steps)
    result["tokens_per_s_with_prepass"] = result["measured_tokens"] / (result["measured_seconds"] + share)
    return result


def child_trl(data: str, variant: str, steps: int, warmup: int, out_dir: str) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from bridle.models import resolve_model

    path = resolve_model(MODEL_ALIAS)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    args = DPOConfig(output_dir=out_dir, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
                     max_steps=warmup + steps, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
                     weight_decay=0.0, max_grad_norm=1.0, max_length=MAX_LENGTH, beta=BETA, loss_type=["sigmoid"],
                     gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True, eval_strategy="no",
                     save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True,
                     dataloader_num_workers=0, train_sampling_strategy="sequential", seed=SEED)
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
                             target_modules="all-linear") if variant == "lora" else None
    step_times: list[StepTime] = []
    losses: list[float] = []
    batch_tokens: list[int] = []

    class CountingDPOTrainer(DPOTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN201
            batch_tokens.append(int(inputs["attention_mask"].sum()))
            return super().training_step(model, inputs, num_items_in_batch)

    trainer = CountingDPOTrainer(model=model, args=args, train_dataset=load_dataset("json", data_files=data,
                                                                                    split="train"),
                                 processing_class=tokenizer, peft_config=peft_config,
                                 callbacks=[trl_step_timer(step_times, losses, batch_tokens, log, f"trl {variant}")])
    trainer.train()
    return summarize(step_times, losses, warmup, {"reference_model_in_memory": trainer.ref_model is not None})


def run_child(name: str, data: str, steps: int, warmup: int, work: Path) -> dict[str, Any]:
    args = ["--child", name, "--data", data, "--steps", str(steps), "--warmup", str(warmup), "--out", str(work / name)]
    started = time.perf_counter()
    result = run_child_script(__file__, args, work, name)
    log(f"{name}: {result['tokens_per_s']:.1f} tokens/s, peak {result['peak_gib']:.2f} GiB, first loss "
        f"{result['first_loss']:.6f}, {time.perf_counter() - started:.0f} s wall")
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    return {"throughput_ratio": round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3),
            "throughput_ratio_with_prepass": round(ours["tokens_per_s_with_prepass"] / theirs["tokens_per_s"], 3),
            "memory_ratio": round(ours["peak_gib"] / theirs["peak_gib"], 3),
            "first_loss_abs_diff": round(abs(ours["first_loss"] - theirs["first_loss"]), 6)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="measured optimizer steps (default 2; 1 --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up steps, not measured (default 1)")
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated variants to run (default: all)")
    parser.add_argument("--child", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps if args.steps is not None else (1 if args.quick else 2)
    if args.child:
        framework, variant = VARIANTS[args.child]
        child = child_bridle if framework == "bridle" else child_trl
        print_result(child(args.data, variant, steps, args.warmup, args.out))
        return 0

    base = {"benchmark": "dpo", "model": "SmolLM2-135M-Instruct", "data": "hh-rlhf harmless-base-test",
            "batch_pairs": BATCH, "max_length": MAX_LENGTH, "steps": steps, "warmup_steps": args.warmup,
            "loss": "sigmoid", "beta": BETA}
    if not HH.is_file():
        print(json.dumps({**base, "skipped": f"data not found: {HH}"}))
        return 0
    import torch
    import trl

    from bridle.models import resolve_model

    started = time.perf_counter()
    records, share = build_records(resolve_model(MODEL_ALIAS), BATCH * (steps + args.warmup))
    log(f"prompt tokens are {share:.1%} of the measured pairs' tokens")
    names = [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bridle-bench-dpo-") as tmp:
        work = Path(tmp)
        data = work / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        for name in names:
            results[name] = run_child(name, str(data), steps, args.warmup, work)
    compare = {}
    for ours, theirs in (("bridle-fp32", "trl-fp32"), ("bridle-lora", "trl-lora"), ("bridle-bf16", "trl-fp32"),
                         ("bridle-padding-free", "trl-fp32"), ("bridle-fp32-plain", "trl-fp32")):
        if ours in results and theirs in results:
            compare[f"{ours}_vs_{theirs}"] = ratios(results[ours], results[theirs])
    line = {**base, "pairs": len(records), "prompt_token_share": round(share, 3), "log2": round(math.log(2), 6),
            **compare, "runs": results,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "trl_version": trl.__version__,
            "torch_version": torch.__version__, "wall_seconds": round(time.perf_counter() - started, 1)}
    from common import print_final  # the versions of every package measured go with the line

    print_final(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
