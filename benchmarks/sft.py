"""SFT throughput and memory: Bridle against TRL's SFTTrainer on the same model, data and settings, in one run.

    python benchmarks/sft.py [--steps N] [--warmup N] [--quick]

Prints ONE JSON line to stdout (progress goes to stderr). Model: the embedded SmolLM2-135M-Instruct in fp32, loaded by
both frameworks from the same HF directory. Data: real instructions from ../shared/data (alpaca_tiny_100 and the
self-instruct seed tasks) as conversational prompt/completion pairs, shuffled once with a fixed seed and written to a
temporary jsonl that both frameworks read; both then apply the same chat template and take the loss on completion
tokens only. Settings, identical for both: micro-batch 4, max length 256, lr 1e-5 constant, AdamW, clipping at 1.0,
no gradient checkpointing, no eval, data in file order (no shuffling, so unpacked runs see the same batches), first
with packing (Bridle: packed rows + position_ids; TRL: packing=True, strategy "bfd", which turns on padding-free
batches), then without (plain right-padded batches).

Each framework trains in its own subprocess so its peak RSS is its own. tokens/s = real (non-pad) input tokens of the
measured optimizer steps / wall seconds of those steps; warm-up steps, model loading and tokenization are excluded.
A step's time is the optimizer step as the framework runs it: Bridle's collation of the step's micro-batches and
`Engine.optimizer_step` (forward, backward, clip, AdamW step); TRL's `on_step_begin` → `on_step_end` (forward,
backward, clip, AdamW step; its collation happens before `on_step_begin`, so TRL is not charged for it).
MFU = 6 · n_params · tokens/s / matmul peak, where the peak is the best fp32 `F.linear` rate measured on the
model's own projection shapes in this same run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
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

DATA_DIR = REPO.parent / "shared" / "data"
ALPACA = DATA_DIR / "alpaca" / "alpaca_tiny_100.jsonl.gz"
SEED_TASKS = DATA_DIR / "self-instruct" / "seed_tasks.jsonl.gz"
MODEL_ALIAS = "smollm2-135m"
BATCH = 4
MAX_LENGTH = 256
LR = 1e-5
SEED = 0
log = bench_logger("sft")


# -- data ------------------------------------------------------------------------------------------------------------
def _read_gz_jsonl(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _pair(instruction: str, given: str, output: str) -> dict[str, Any] | None:
    instruction, given, output = instruction.strip(), (given or "").strip(), (output or "").strip()
    if not instruction or not output:
        return None
    prompt = f"{instruction}\n\n{given}" if given else instruction
    return {"prompt": [{"role": "user", "content": prompt}],
            "completion": [{"role": "assistant", "content": output}]}


def build_records() -> list[dict[str, Any]]:
    """Conversational prompt/completion pairs from alpaca_tiny_100 and the self-instruct seed tasks."""
    records = [_pair(r.get("instruction", ""), r.get("input", ""), r.get("output", "")) for r in _read_gz_jsonl(ALPACA)]
    for task in _read_gz_jsonl(SEED_TASKS):
        instance = (task.get("instances") or [{}])[0]
        records.append(_pair(task.get("instruction", ""), instance.get("input", ""), instance.get("output", "")))
    kept = [r for r in records if r is not None]
    random.Random(SEED).shuffle(kept)
    return kept


def drop_long_prompts(records: list[dict[str, Any]], model_dir: str) -> list[dict[str, Any]]:
    """Drop pairs whose chat-templated prompt alone fills MAX_LENGTH (no completion token would be left to learn)."""
    from bridle.data.tokenize import encode_prompt_completion
    from bridle.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir, max_length=MAX_LENGTH)
    return [r for r in records if encode_prompt_completion(r, tokenizer)[1] < MAX_LENGTH]


# -- matmul peak -----------------------------------------------------------------------------------------------------
def matmul_peak_gflops(hidden: int = 576, intermediate: int = 1536, rows: int = 1024, reps: int = 30
                       ) -> dict[str, float]:
    """Best fp32 F.linear rate (GFLOP/s) on the model's projection shapes: (rows × in) · (in × out)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    rates: dict[str, float] = {}
    for d_in, d_out in ((hidden, hidden), (hidden, intermediate), (intermediate, hidden)):
        x, w = torch.randn(rows, d_in), torch.randn(d_out, d_in)
        flops = 2.0 * rows * d_in * d_out
        for _ in range(5):
            F.linear(x, w)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(4):
                F.linear(x, w)
            best = min(best, (time.perf_counter() - t0) / 4)
        rates[f"{rows}x{d_in}.{d_in}x{d_out}"] = flops / best / 1e9
    return rates


# -- children --------------------------------------------------------------------------------------------------------
def child_bridle(data: str, packed: bool, steps: int, warmup: int, out_dir: str) -> dict[str, Any]:
    from bridle.engine.batches import BatchPlan
    from bridle.methods.sft import SFT, SFTConfig
    from bridle.models import load_tokenizer, resolve_model

    config = SFTConfig(model=resolve_model(MODEL_ALIAS), data=data, output_dir=out_dir, max_length=MAX_LENGTH,
                       batch_size=BATCH, grad_accum=1, max_steps=warmup + steps, lr=LR, lr_schedule="constant",
                       max_grad_norm=1.0, precision="fp32", model_dtype="float32", gradient_checkpointing=False,
                       packing=packed, completion_only=True, eval_fraction=0.0, log_every=10_000, progress=False,
                       seed=SEED)
    tokenizer = load_tokenizer(config.model, max_length=config.max_length)
    method = SFT(config, tokenizer)
    train_items, eval_items, report = method.build_datasets()
    log(f"bridle {'packed' if packed else 'unpacked'}: {report.splitlines()[-1]}")
    model = method.build_model()  # what `bridle sft` trains: weights as loaded, no checkpointing, no LoRA
    method.prepare_model(model)
    method.before_training(model, train_items, eval_items)
    step_times: list[tuple[float, float, int]] = []
    losses: list[float] = []
    engine = timed_engine(step_times, losses, log)(config, model, method, train_items, eval_items)
    # file order, like TRL's sequential sampler, so unpacked runs train on the same batches
    engine.plan = BatchPlan(len(train_items), config.batch_size, seed=config.seed, shuffle=False)
    engine.fit()
    n_params = sum(p.numel() for p in model.parameters())
    return summarize(step_times, warmup, losses, n_params,
                     {"train_items": len(train_items), "optimizer": "torch.optim.AdamW (torch default impl)"})


def child_trl(data: str, packed: bool, steps: int, warmup: int, out_dir: str) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from bridle.models import resolve_model

    path = resolve_model(MODEL_ALIAS)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    dataset = load_dataset("json", data_files=data, split="train")
    args = SFTConfig(
        output_dir=out_dir, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
        max_steps=warmup + steps, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=1.0, max_length=MAX_LENGTH, packing=packed, packing_strategy="bfd",
        padding_free=packed, completion_only_loss=True, gradient_checkpointing=False, bf16=False, fp16=False,
        use_cpu=True, eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0, train_sampling_strategy="sequential", seed=SEED,
    )
    step_times: list[tuple[float, float, int]] = []
    losses: list[float] = []
    batch_tokens: list[int] = []

    class CountingSFTTrainer(SFTTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN201
            # real tokens: attention_mask for padded batches; padding-free batches are one flat row with no pads
            if "attention_mask" in inputs:
                batch_tokens.append(int(inputs["attention_mask"].sum()))
            else:
                batch_tokens.append(int(inputs["input_ids"].numel()))
            return super().training_step(model, inputs, num_items_in_batch)

    trainer = CountingSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                 callbacks=[trl_step_timer(step_times, losses, batch_tokens, log)])
    log(f"trl {'packed' if packed else 'unpacked'}: {len(trainer.train_dataset)} train rows, "
        f"padding_free={trainer.padding_free}, optim={args.optim}")
    trainer.train()
    n_params = sum(p.numel() for p in model.parameters())
    return summarize(step_times, warmup, losses, n_params,
                     {"train_items": len(trainer.train_dataset), "optimizer": str(args.optim),
                      "padding_free": bool(trainer.padding_free)})


def run_child(framework: str, packed: bool, data: str, steps: int, warmup: int, work: Path) -> dict[str, Any]:
    out_dir = work / f"{framework}-{'packed' if packed else 'unpacked'}"
    args = ["--child", framework, "--data", data, "--steps", str(steps), "--warmup", str(warmup), "--out", str(out_dir)]
    if packed:
        args.append("--packed")
    log(f"running {framework} ({'packed' if packed else 'unpacked'}) ...")
    started = time.perf_counter()
    result = run_child_script(__file__, args, work, framework)
    log(f"{framework} ({'packed' if packed else 'unpacked'}): {result['tokens_per_s']:.1f} tokens/s, "
        f"peak {result['peak_gib']:.2f} GiB, {time.perf_counter() - started:.0f} s wall")
    return result


def compare(bridle: dict[str, Any], trl: dict[str, Any], peak_flops: float) -> dict[str, Any]:
    out = {}
    for name, r in (("bridle", bridle), ("trl", trl)):
        mfu = 6.0 * r["n_params"] * r["tokens_per_s"] / peak_flops
        out[name] = {"tokens_per_s": round(r["tokens_per_s"], 1), "peak_gib": round(r["peak_gib"], 3),
                     "mfu": round(mfu, 4), "mean_loss": round(r["mean_loss"], 4),
                     "median_step_tokens_per_s": round(r["median_step_tokens_per_s"], 1),
                     "cpu_tokens_per_s": round(r["measured_tokens"] / max(r["cpu_seconds"], 1e-9), 1),
                     "measured_tokens": r["measured_tokens"], "measured_seconds": round(r["measured_seconds"], 2),
                     "step_seconds": r["step_seconds"],
                     "train_items": r["train_items"], "optimizer": r["optimizer"]}
    out["throughput_ratio"] = round(bridle["tokens_per_s"] / trl["tokens_per_s"], 3)
    out["memory_ratio"] = round(bridle["peak_gib"] / trl["peak_gib"], 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="measured optimizer steps (default 5; 2 --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps, not measured (default 1)")
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke run")
    parser.add_argument("--child", choices=("bridle", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--packed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps if args.steps is not None else (2 if args.quick else 5)
    warmup = args.warmup if args.warmup is not None else 1

    if args.child:
        child = child_bridle if args.child == "bridle" else child_trl
        print_result(child(args.data, args.packed, steps, warmup, args.out))
        return 0

    base = {"benchmark": "sft", "model": "SmolLM2-135M-Instruct", "dtype": "fp32", "batch": BATCH,
            "max_length": MAX_LENGTH, "steps": steps, "warmup_steps": warmup}
    missing = [str(p) for p in (ALPACA, SEED_TASKS) if not p.is_file()]
    if missing:
        print(json.dumps({**base, "skipped": f"data not found: {', '.join(missing)}"}))
        return 0

    import torch
    import transformers
    import trl

    started = time.perf_counter()
    load_start = os.getloadavg()[0]  # other work on the machine skews every figure; reported at start and end
    from bridle.models import resolve_model

    model_dir = resolve_model(MODEL_ALIAS)  # convert the embedded GGUF once, outside any measured child
    pairs = build_records()
    records = drop_long_prompts(pairs, model_dir)
    log(f"{len(records)} prompt/completion pairs ({len(pairs) - len(records)} dropped: prompt >= {MAX_LENGTH} "
        f"tokens); torch threads {torch.get_num_threads()}")
    rates = matmul_peak_gflops()
    peak_gflops = max(rates.values())
    log(f"matmul peak {peak_gflops:.1f} GFLOP/s fp32 ({', '.join(f'{k}: {v:.1f}' for k, v in rates.items())})")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bridle-bench-sft-") as tmp:
        work = Path(tmp)
        data = work / "sft_pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        for packed in (True, False):
            pair = {fw: run_child(fw, packed, str(data), steps, warmup, work) for fw in ("trl", "bridle")}
            results["packed" if packed else "unpacked"] = compare(pair["bridle"], pair["trl"], peak_gflops * 1e9)
        n_params = pair["bridle"]["n_params"]
    line = {**base, "examples": len(records), "n_params": n_params, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
            "matmul_peak_gflops": round(peak_gflops, 1), **results, "trl_version": trl.__version__,
            "transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "wall_seconds": round(time.perf_counter() - started, 1)}
    from common import print_final  # the versions of every package measured go with the line

    print_final(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
