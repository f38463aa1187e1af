"""Reward-model training throughput and memory: Bridle's `rm` against TRL's RewardTrainer, same model, data, batch.

    python benchmarks/rm.py [--steps N] [--warmup N] [--quick]

Prints ONE JSON line to stdout (progress goes to stderr). Model: the embedded SmolLM2-135M-Instruct in fp32 with a
new one-label `score` head, loaded by both frameworks from the same HF directory. Data: hh-rlhf harmless-base pairs
(../shared/data), normalized by Bridle into conversational prompt/chosen/rejected rows. On the whole file we count
what each framework does with pairs longer than max length 256: Bridle truncates them (prompt from the left, then
the response), TRL drops them. Training then uses only the pairs that fit, in file order, so both frameworks see
the very same batches: 4 pairs (8 sequences, chosen and rejected in one forward pass), lr 1e-5 constant, AdamW,
clipping at 1.0, no gradient checkpointing, no eval. Bridle runs three times: its default (prefix-shared: one row
per pair, the prompt once and both responses after it), `bridle-plain` (--no-prefix-sharing: 8 right-padded rows)
and padding-free (prefix-shared groups back to back in one row). `prompt_token_share` is the prompts' share of all
tokens of the measured pairs (chosen and rejected each counted with their prompt, as the plain layout feeds them):
what prefix sharing can save.

Each framework trains in its own subprocess so its peak RSS (resource.getrusage) is its own. tokens/s = real
(non-pad) tokens of the measured optimizer steps / wall seconds of those steps (warm-up, loading and tokenization
excluded); the median per-step rate and process CPU seconds are reported too, as the machine may be shared.
Ratios are Bridle / TRL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (helpers shared by the benchmarks)
    REPO,
    bench_logger,
    print_result,
    run_child_script,
    summarize,
    timed_engine,
    trl_step_timer,
)

HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
MODEL_ALIAS = "smollm2-135m"
BATCH, MAX_LENGTH, LR, SEED = 4, 256, 1e-5, 0
VARIANTS = ("trl", "bridle", "bridle-plain", "bridle-padding-free")
log = bench_logger("rm")


def split_by_fit(model_dir: str) -> tuple[list[dict[str, Any]], int, list[tuple[int, int]]]:
    """(pairs whose chosen and rejected both fit in MAX_LENGTH, in file order; number of usable pairs in the file;
    (prompt tokens, all tokens of chosen + rejected) of each pair that fits)."""
    from bridle.data import load_rows, normalize
    from bridle.data.tokenize import encode_prompt_completion
    from bridle.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir, max_length=MAX_LENGTH)
    records, _ = normalize(load_rows(str(HH)), "preference", on_bad_row="skip")
    fit, tokens = [], []
    for r in records:
        encoded = [encode_prompt_completion({"prompt": r["prompt"], "completion": r[side]}, tokenizer)
                   for side in ("chosen", "rejected")]
        lengths = [len(ids) for ids, _ in encoded]
        if max(lengths) <= MAX_LENGTH:
            fit.append({"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
            tokens.append((sum(prompt for _, prompt in encoded), sum(lengths)))
    return fit, len(records), tokens


def child_bridle(data: str, variant: str, steps: int, warmup: int, out_dir: str) -> dict[str, Any]:
    from transformers import set_seed

    from bridle.engine.batches import BatchPlan
    from bridle.methods.rm import RewardModelling, RMConfig
    from bridle.models import load_tokenizer, resolve_model

    config = RMConfig(model=resolve_model(MODEL_ALIAS), data=data, output_dir=out_dir, max_length=MAX_LENGTH,
                      batch_size=BATCH, grad_accum=1, max_steps=warmup + steps, lr=LR, lr_schedule="constant",
                      max_grad_norm=1.0, precision="fp32", model_dtype="float32", gradient_checkpointing=False,
                      padding_free=variant == "bridle-padding-free", prefix_sharing=variant != "bridle-plain",
                      eval_fraction=0.0, eval_every=0, log_every=10_000, progress=False,
                      seed=SEED)
    tokenizer = load_tokenizer(config.model, max_length=config.max_length)
    method = RewardModelling(config, tokenizer)
    train_items, _, report = method.build_datasets()
    log(f"bridle: {report.splitlines()[0]}")
    set_seed(SEED)  # the new head is drawn from the global RNG, as `bridle rm` (runner.run) seeds it
    model = method.build_model()
    step_times: list[tuple[float, float, int]] = []
    losses: list[float] = []
    engine = timed_engine(step_times, losses, log)(config, model, method, train_items, [])
    engine.plan = BatchPlan(len(train_items), config.batch_size, seed=config.seed, shuffle=False)  # file order
    engine.fit()
    n_params = sum(p.numel() for p in model.parameters())
    return summarize(step_times, warmup, losses, n_params, {"train_items": len(train_items)})


def child_trl(data: str, steps: int, warmup: int, out_dir: str) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from bridle.models import resolve_model

    path = resolve_model(MODEL_ALIAS)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    args = RewardConfig(
        output_dir=out_dir, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
        max_steps=warmup + steps, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, max_length=MAX_LENGTH, gradient_checkpointing=False, bf16=False, fp16=False,
        use_cpu=True, eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True,
        dataloader_num_workers=0, train_sampling_strategy="sequential", seed=SEED,
        model_init_kwargs={"dtype": torch.float32, "attn_implementation": "sdpa"})
    step_times: list[tuple[float, float, int]] = []
    losses: list[float] = []
    batch_tokens: list[int] = []

    class CountingRewardTrainer(RewardTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN201
            batch_tokens.append(int(inputs["attention_mask"].sum()))
            return super().training_step(model, inputs, num_items_in_batch)

    trainer = CountingRewardTrainer(model=path, args=args, train_dataset=load_dataset("json", data_files=data,
                                                                                      split="train"),
                                    processing_class=tokenizer,
                                    callbacks=[trl_step_timer(step_times, losses, batch_tokens, log)])
    log(f"trl: {len(trainer.train_dataset)} train pairs after its length filter")
    trainer.train()
    n_params = sum(p.numel() for p in trainer.model.parameters())
    return summarize(step_times, warmup, losses, n_params, {"train_items": len(trainer.train_dataset)})


def run_child(variant: str, data: str, steps: int, warmup: int, work: Path) -> dict[str, Any]:
    args = ["--child", variant, "--data", data, "--steps", str(steps), "--warmup", str(warmup),
            "--out", str(work / variant)]
    log(f"running {variant} ...")
    result = run_child_script(__file__, args, work, variant)
    log(f"{variant}: {result['tokens_per_s']:.1f} tokens/s, peak {result['peak_gib']:.2f} GiB")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="measured optimizer steps (default 5; 2 --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up steps, not measured (default 1)")
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke run")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps if args.steps is not None else (2 if args.quick else 5)

    if args.child:
        if args.child == "trl":
            result = child_trl(args.data, steps, args.warmup, args.out)
        else:
            result = child_bridle(args.data, args.child, steps, args.warmup, args.out)
        print_result(result)
        return 0

    base = {"benchmark": "rm", "model": "SmolLM2-135M-Instruct", "dtype": "fp32", "batch_pairs": BATCH,
            "max_length": MAX_LENGTH, "steps": steps, "warmup_steps": args.warmup}
    if not HH.is_file():
        print(json.dumps({**base, "skipped": f"data not found: {HH}"}))
        return 0
    import torch
    import transformers
    import trl

    from bridle.models import resolve_model

    started, load_start = time.perf_counter(), os.getloadavg()[0]
    fit, total, tokens = split_by_fit(resolve_model(MODEL_ALIAS))
    measured = tokens[:BATCH * (steps + args.warmup)]
    share = sum(p for p, _ in measured) / max(1, sum(n for _, n in measured))
    log(f"{total} usable pairs, {len(fit)} fit in {MAX_LENGTH} tokens; prompt tokens are {share:.1%} of the measured "
        f"pairs' tokens; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="bridle-bench-rm-") as tmp:
        work = Path(tmp)
        data = work / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in fit), encoding="utf-8")
        results = {v: run_child(v, str(data), steps, args.warmup, work) for v in VARIANTS}
    trl_r = results["trl"]
    line: dict[str, Any] = {**base, "pairs_in_file": total, "bridle_truncated_pairs": total - len(fit),
                            "trl_kept_pairs": len(fit), "trl_dropped_pairs": total - len(fit),
                            "prompt_token_share": round(share, 3)}
    for name, r in results.items():
        line[name] = {"tokens_per_s": round(r["tokens_per_s"], 1), "peak_gib": round(r["peak_gib"], 3),
                      "mean_loss": round(r["mean_loss"], 4), "measured_tokens": r["measured_tokens"],
                      "measured_seconds": round(r["measured_seconds"], 2), "cpu_seconds": round(r["cpu_seconds"], 2),
                      "median_step_tokens_per_s": round(r["median_step_tokens_per_s"], 1),
                      "train_items": r["train_items"]}
        if name != "trl":
            line[name]["throughput_ratio"] = round(r["tokens_per_s"] / trl_r["tokens_per_s"], 3)
            line[name]["memory_ratio"] = round(r["peak_gib"] / trl_r["peak_gib"], 3)
    line.update(cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
                load_avg_1m=[round(load_start, 2), round(os.getloadavg()[0], 2)], trl_version=trl.__version__,
                transformers_version=transformers.__version__, torch_version=torch.__version__,
                wall_seconds=round(time.perf_counter() - started, 1))
    from common import print_final  # the versions of every package measured go with the line

    print_final(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
