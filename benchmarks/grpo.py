"""GRPO rollout and update throughput and memory: Bridle (`bridle grpo`) against TRL's GRPOTrainer, same model,
prompts, group size and lengths, in one run.

    python benchmarks/grpo.py [--steps N] [--warmup N] [--group-size G] [--prompts-per-step P]
                              [--max-new-tokens T] [--batch-size B] [--data FILE] [--sampler fast|hf]
                              [--profile] [--quick]

Prints ONE JSON line to stdout (progress goes to stderr). Model: the embedded SmolLM2-135M-Instruct in fp32, loaded
by both frameworks from the same HF directory. Prompts: the project's arithmetic problems
(`arithmetic_problems(P · (warmup + steps), seed=0)`), or the first P · (warmup + steps) rows of `--data` (e.g. GSM8K:
../shared/data/gsm8k/train.jsonl.gz), as conversational prompts (one user message, rendered by the model's chat
template with the generation prompt) plus their "answer" column; reward: Bridle's `math_exact_match` (TRL gets it
through a wrapper that unwraps its conversational completions to text). Both frameworks see the very same prompts in
the same order: Bridle runs first and reports the order its rounds took them in; TRL reads them in that order
without shuffling (checked: `same_prompts`).

Settings, identical for both: G completions per prompt, P prompts per optimizer step (one generate call for all
P·G rows, one optimizer step per generation batch: TRL num_iterations=1, steps_per_generation = gradient
accumulation), micro-batches of B completions and P·G/B accumulation steps, at most T new tokens, temperature 1.0,
top-k/top-p off, no prompt truncation, β = 0.04 (k3 KL to a frozen reference copy, in the loss), ratio clip 0.2,
rewards normalized by the group mean and (unbiased) std + 1e-4 (TRL scale_rewards="group"), loss averaged per
completion then over completions (Bridle loss_aggregation="sequence" = TRL loss_type="grpo"), lr 1e-6 constant,
AdamW, clipping at 1.0, no gradient checkpointing, no eval. One warm-up step is run and not measured.

Each framework runs in its own subprocess so its peak RSS (resource.getrusage) is its own. Per optimizer step we time:
  generation  Bridle: the `bridle.rollout.sample` call (chat template, tokenize, Bridle's decode loop (`--sampler fast`,
              the default: each prompt prefilled once for its G samples, finished rows dropped) or HF generate with
              Bridle's logits processor (`--sampler hf`), decode); TRL: `GRPOTrainer._generate` (chat template,
              tokenize, HF generate, decode).
  experience  generation + rewards + reference log-probs + advantages (Bridle: `make_experience`;
              TRL: `_generate_and_score_completions`).
  step        the whole optimizer step (Bridle: from the previous step's end to the end of
              `Engine.optimizer_step`, the round's experience included; TRL: `on_step_begin` → `on_step_end`).
  update      step − experience: collate, loss forward + backward over every micro-batch, clip, optimizer step.
rollout tokens/s = generated completion tokens (up to and including EOS; TRL: its completion_mask) / generation
seconds. update tokens/s = prompt + completion tokens (non-pad) of the micro-batches the loss runs on / update
seconds. Ratios are Bridle / TRL. Sampling is random in both, so completion lengths and rewards differ between the
frameworks; mean completion length and the mean reward each saw are reported next to the rates.

How far from the limit: rollout_bound_tokens_per_s = matmul peak / FLOPs per decoded token, where the peak is the best
fp32 `F.linear` rate on the model's projection shapes measured in this same run (as benchmarks/sft.py does) and FLOPs
per decoded token = 2 · parameters (every weight, the tied embedding as the LM head, multiplies once per token) +
4 · layers · hidden · mean context (QKᵀ and attention·V over the prompt plus half the completion). It leaves out the
prompts' prefill (Bridle: once per prompt; TRL: once per sample), so it is a bound on decoding alone.
`--profile` also runs torch.profiler over the last measured generation call of each framework and reports its
heaviest operators (self CPU time): where the generation time goes. The profiler slows that call, so only use the
rates of a run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (helpers shared by the benchmarks)
    StepTime,
    bench_logger,
    peak_rss_gib,
    print_result,
    run_child_script,
    timed_engine,
    trl_step_timer,
)

MODEL_ALIAS = "smollm2-135m"
LR, BETA, TEMPERATURE, CLIP_EPS, SEED = 1e-6, 0.04, 1.0, 0.2, 0
log = bench_logger("grpo")

COUNTS = {
    "rollout_tokens_per_s": "generated completion tokens (incl. EOS) / seconds in the generation call",
    "update_tokens_per_s": "prompt + completion tokens (non-pad) in the loss forward/backward / (step - experience) "
                           "seconds: collate, forward, backward, clip, optimizer step",
    "experience_other_seconds": "rewards + reference log-prob forward + advantages (experience - generation)",
    "completions_per_s": "completions trained on / whole optimizer-step seconds (generation included)",
    "mean_reward": "mean math_exact_match reward over every step's completions, warm-up included",
    "peak_gib": "peak RSS of the framework's own process",
    "rollout_bound_tokens_per_s": "measured fp32 matmul peak / FLOPs per decoded token (2 · params + 4 · layers · "
                                  "hidden · mean context): decoding at the matmul peak, prefill left out",
    "rollout_fraction_of_bound": "rollout_tokens_per_s / rollout_bound_tokens_per_s",
}
DIFFERENCES = [
    "old log-probs: neither computes them (one update per generation batch: ratio = exp(logp - logp.detach()))",
    "loss forward: TRL also computes full-vocabulary entropy on completion positions; Bridle only the sampled "
    "tokens' log-probs, chunked (its entropy is recorded while sampling)",
    "sampling: Bridle records each sampled token's log-prob and entropy while sampling (its decode loop: prompts "
    "prefilled once per group, finished rows dropped, inverse-CDF draws); TRL's plain HF sampling records nothing",
    "loss batch layout: TRL left-pads prompts and right-pads completions (width = max prompt + max completion); "
    "Bridle right-pads prompt+completion rows (width = max total)",
    "reference: TRL loads a second copy from disk, Bridle deep-copies the policy (both hold two models)",
    "optimizer: TRL adamw_torch_fused, Bridle torch.optim.AdamW default",
    "a reward of None: TRL NaN (left out of the group stats), Bridle 0.0 (never happens with these answers)",
]


# -- data ------------------------------------------------------------------------------------------------------------
def build_records(data: str | None, count: int) -> list[dict[str, Any]]:
    """`count` conversational prompt rows {"prompt": [user message], "answer": ..., ...other columns}."""
    if data:
        from bridle.data.prompts import load_prompt_dataset

        rows, report = load_prompt_dataset(data, limit=count)
        log(report)
        pairs = [(r.prompt, dict(r.columns)) for r in rows]
    else:
        from bridle.data.arithmetic import arithmetic_problems

        pairs = [(r["prompt"], {"answer": r["answer"]}) for r in arithmetic_problems(count, seed=SEED)]
    records = []
    for prompt, columns in pairs:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        records.append({"prompt": messages, **{k: v for k, v in columns.items() if k != "prompt"}})
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def prompt_key(messages: list[dict[str, str]]) -> str:
    return messages[-1]["content"]


# -- where the time goes, and the limit -------------------------------------------------------------------------------
def profiled(run: Callable[[], Any], rows: int = 14) -> tuple[Any, list[list[Any]]]:
    """run() under torch.profiler; its heaviest operators as [name, self CPU ms, calls, % of all self CPU time]."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = max(sum(e.self_cpu_time_total for e in events), 1e-9)
    return out, [[e.key, round(e.self_cpu_time_total / 1e3, 1), e.count, round(100 * e.self_cpu_time_total / total, 1)]
                 for e in events[:rows]]


def decode_bound(result: dict[str, Any], shape: dict[str, Any], peak_gflops: float) -> dict[str, Any]:
    """Rollout tokens/s at the matmul peak (prefill left out) and how much of it was reached."""
    context = shape["mean_prompt_length"] + result["mean_completion_length"] / 2
    flops = 2 * shape["parameters"] + 4 * shape["layers"] * shape["hidden"] * context
    bound = peak_gflops * 1e9 / flops
    return {"rollout_flops_per_token": round(flops), "rollout_bound_tokens_per_s": round(bound, 1),
            "rollout_fraction_of_bound": round(result["rollout_tokens_per_s"] / bound, 3)}


# -- children --------------------------------------------------------------------------------------------------------
def summarize_grpo(s: dict[str, Any], steps: list[StepTime], experience: list[float],
                   generation: list[tuple[float, int, int]], rewards: list[float], losses: list[float], warmup: int,
                   extra: dict[str, Any]) -> dict[str, Any]:
    """generation: (seconds, completion tokens, longest completion) per step; all lists have warm-up steps first."""
    if not len(steps) == len(experience) == len(generation):
        raise RuntimeError(f"{len(steps)} steps but {len(experience)} experience and {len(generation)} generation "
                           "timings: more than one generation per optimizer step?")
    m_steps, m_exp, m_gen = steps[warmup:], experience[warmup:], generation[warmup:]
    step_seconds = sum(t for t, _, _ in m_steps)
    gen_seconds, gen_tokens = sum(t for t, _, _ in m_gen), sum(n for _, n, _ in m_gen)
    update_seconds = sum(t - e for (t, _, _), e in zip(m_steps, m_exp))
    update_tokens = sum(n for _, _, n in m_steps)
    completions = s["prompts_per_step"] * s["group_size"] * len(m_steps)
    return {"rollout_tokens_per_s": gen_tokens / max(gen_seconds, 1e-9),
            "update_tokens_per_s": update_tokens / max(update_seconds, 1e-9),
            "completions_per_s": completions / max(step_seconds, 1e-9), "peak_gib": peak_rss_gib(),
            "rollout_tokens": gen_tokens, "rollout_seconds": gen_seconds, "update_tokens": update_tokens,
            "update_seconds": update_seconds, "experience_other_seconds": sum(m_exp) - gen_seconds,
            "measured_seconds": step_seconds, "cpu_seconds": sum(c for _, c, _ in m_steps),
            "step_seconds": [round(t, 3) for t, _, _ in m_steps],
            "generation_seconds": [round(t, 3) for t, _, _ in m_gen],
            "mean_completion_length": gen_tokens / max(completions, 1),
            "mean_longest_completion": sum(x for _, _, x in m_gen) / max(len(m_gen), 1),
            "mean_reward": sum(rewards) / max(len(rewards), 1), "step_rewards": [round(r, 4) for r in rewards],
            "mean_loss": sum(losses[warmup:]) / max(len(losses[warmup:]), 1), **extra}


def child_bridle(data: str, s: dict[str, Any], out_dir: str) -> dict[str, Any]:
    from transformers import set_seed

    import bridle.methods.online as online
    from bridle.methods.grpo import GRPO, GRPOConfig
    from bridle.models import load_tokenizer, resolve_model

    per_step = s["prompts_per_step"] * s["group_size"]
    config = GRPOConfig(model=resolve_model(MODEL_ALIAS), data=data, output_dir=out_dir, reward="math_exact_match",
                        num_samples=s["group_size"], prompts_per_rollout=s["prompts_per_step"],
                        batch_size=s["batch_size"], grad_accum=per_step // s["batch_size"], update_epochs=1,
                        generation_batch_size=per_step, max_new_tokens=s["max_new_tokens"], max_prompt_length=0,
                        temperature=TEMPERATURE, top_p=1.0, top_k=0, beta=BETA, clip_eps=CLIP_EPS,
                        scale_rewards=True, loss_aggregation="sequence", max_steps=s["warmup"] + s["steps"], lr=LR,
                        lr_schedule="constant", max_grad_norm=1.0, precision="fp32", model_dtype="float32",
                        gradient_checkpointing=False, eval_fraction=0.0, progress=False, seed=SEED,
                        sampler=s["sampler"])
    step_times: list[StepTime] = []
    losses: list[float] = []
    experience: list[float] = []
    generation: list[tuple[float, int, int]] = []
    rewards: list[float] = []
    rows_used: list[int] = []
    prompt_lengths: list[int] = []
    profile: list[list[Any]] = []
    sample = online.sample

    def timed_sample(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        if s["profile"] and len(generation) == s["warmup"] + s["steps"] - 1:  # the last measured call
            rollout, profile[:] = profiled(lambda: sample(*args, **kwargs))
        else:
            rollout = sample(*args, **kwargs)
        generation.append((time.perf_counter() - t0, rollout.num_tokens,
                           max(int(r.numel()) for r in rollout.response_ids)))
        prompt_lengths.extend(int(p.numel()) for p in rollout.prompt_ids)
        return rollout

    online.sample = timed_sample  # what make_experience calls

    class TimedGRPO(GRPO):
        def round_prompts(self, round_index: int) -> list[Any]:
            rows = super().round_prompts(round_index)
            rows_used.extend(r.row for r in rows)
            return rows

        def make_experience(self, model: Any, round_index: int) -> tuple[list[Any], dict[str, float]]:
            t0 = time.perf_counter()
            items, metrics = super().make_experience(model, round_index)
            experience.append(time.perf_counter() - t0)
            rewards.append(metrics["reward/mean"])
            log(f"bridle round {round_index + 1}: generation {generation[-1][0]:.2f} s for {generation[-1][1]} "
                f"tokens, experience {experience[-1]:.2f} s, reward {metrics['reward/mean']:.3f}")
            return items, metrics

    set_seed(config.seed)  # as runner.run seeds a `bridle grpo` run
    tokenizer = load_tokenizer(config.model, max_length=config.max_length)
    method = TimedGRPO(config, tokenizer)
    train_items, eval_items, report = method.build_datasets()
    log(f"bridle: {report.splitlines()[0]}")
    model = method.build_model()  # what `bridle grpo` trains: weights as loaded, no checkpointing, no LoRA
    method.prepare_model(model)
    method.before_training(model, train_items, eval_items)
    engine = timed_engine(step_times, losses, log)(config, model, method, train_items, eval_items)
    engine.fit()
    shape = {"parameters": sum(p.numel() for p in model.parameters()), "layers": model.config.num_hidden_layers,
             "hidden": model.config.hidden_size, "mean_prompt_length": sum(prompt_lengths) / len(prompt_lengths)}
    return summarize_grpo(s, step_times, experience, generation, rewards, losses, s["warmup"],
                          {"prompt_rows": rows_used, "optimizer": "torch.optim.AdamW (torch default impl)",
                           "reference_model_in_memory": method.reference is not None, "sampler": config.sampler,
                           "model_shape": shape, **({"rollout_profile": profile} if profile else {})})


def child_trl(data: str, s: dict[str, Any], out_dir: str) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from bridle.feedback.verifiers import math_exact_match as verifier
    from bridle.models import resolve_model

    path = resolve_model(MODEL_ALIAS)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    per_step, group = s["prompts_per_step"] * s["group_size"], s["group_size"]
    accum = per_step // s["batch_size"]
    args = GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=s["batch_size"], gradient_accumulation_steps=accum,
        steps_per_generation=accum, num_iterations=1, num_generations=group,
        max_completion_length=s["max_new_tokens"], temperature=TEMPERATURE, top_p=1.0, top_k=0, beta=BETA,
        epsilon=CLIP_EPS, loss_type="grpo", scale_rewards="group", shuffle_dataset=False,
        max_steps=s["warmup"] + s["steps"], learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1, disable_tqdm=True,
        dataloader_num_workers=0, log_completions=False, seed=SEED,
    )
    step_times: list[StepTime] = []
    losses: list[float] = []
    batch_tokens: list[int] = []
    experience: list[float] = []
    generation: list[tuple[float, int, int]] = []
    rewards: list[float] = []
    prompts_seen: list[str] = []
    profile: list[list[Any]] = []

    def math_exact_match(prompts: list, completions: list, **columns: Any) -> list[float | None]:
        """Bridle's verifier on text: TRL hands conversational completions as [{"role": "assistant", ...}]."""
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        scores = verifier(prompts, texts, **columns)
        known = [x for x in scores if x is not None]
        rewards.append(sum(known) / max(len(known), 1))
        return scores

    class TimedGRPOTrainer(GRPOTrainer):
        def _generate(self, prompts: list) -> Any:
            t0 = time.perf_counter()
            if s["profile"] and len(generation) == s["warmup"] + s["steps"] - 1:  # the last measured call
                out, profile[:] = profiled(lambda: super(TimedGRPOTrainer, self)._generate(prompts))
            else:
                out = super()._generate(prompts)
            completion_ids = out[1]  # completion tokens up to and including EOS: what completion_mask marks
            generation.append((time.perf_counter() - t0, sum(len(ids) for ids in completion_ids),
                               max(len(ids) for ids in completion_ids)))
            prompts_seen.extend(prompt_key(p) for p in prompts[::group])
            return out

        def _generate_and_score_completions(self, inputs: list) -> Any:
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            experience.append(time.perf_counter() - t0)
            log(f"trl generation {len(experience)}: {generation[-1][0]:.2f} s for {generation[-1][1]} tokens, "
                f"experience {experience[-1]:.2f} s, reward {rewards[-1]:.3f}")
            return out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
            batch_tokens.append(int(inputs["prompt_mask"].sum()) + int(inputs["completion_mask"].sum()))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = TimedGRPOTrainer(model=model, reward_funcs=[math_exact_match], args=args,
                               train_dataset=load_dataset("json", data_files=data, split="train"),
                               processing_class=tokenizer,
                               callbacks=[trl_step_timer(step_times, losses, batch_tokens, log)])
    log(f"trl: loss_type={trainer.loss_type}, scale_rewards={trainer.scale_rewards}, beta={trainer.beta}, "
        f"steps_per_generation={args.steps_per_generation}, generation_batch_size={args.generation_batch_size}, "
        f"optim={args.optim}")
    trainer.train()
    return summarize_grpo(s, step_times, experience, generation, rewards, losses, s["warmup"],
                          {"prompts": prompts_seen, "optimizer": str(args.optim),
                           "reference_model_in_memory": trainer.ref_model is not None,
                           **({"rollout_profile": profile} if profile else {})})


def run_child(framework: str, data: Path, settings: dict[str, Any], work: Path) -> dict[str, Any]:
    args = ["--child", framework, "--data", str(data), "--settings", json.dumps(settings),
            "--out", str(work / framework)]
    log(f"running {framework} ...")
    started = time.perf_counter()
    result = run_child_script(__file__, args, work, framework)
    log(f"{framework}: rollout {result['rollout_tokens_per_s']:.1f} tokens/s, update "
        f"{result['update_tokens_per_s']:.1f} tokens/s, peak {result['peak_gib']:.2f} GiB, mean reward "
        f"{result['mean_reward']:.3f}, {time.perf_counter() - started:.0f} s wall")
    return result


def rounded(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items() if k not in ("prompt_rows", "prompts")}
    for key in ("rollout_tokens_per_s", "update_tokens_per_s"):
        out[key] = round(r[key], 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="measured optimizer steps (default 4; 1 --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up steps, not measured (default 1)")
    parser.add_argument("--group-size", type=int, default=None, help="completions per prompt G (default 8; 2 --quick)")
    parser.add_argument("--prompts-per-step", type=int, default=None,
                        help="prompts per optimizer step P (default 4; 2 --quick)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="most tokens per completion (default 64; 8 --quick)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="completions per micro-batch B (default G); accumulation = P·G / B")
    parser.add_argument("--data", default=None, help="prompt file with an \"answer\" column (e.g. "
                                                     "../shared/data/gsm8k/train.jsonl.gz); default: arithmetic")
    parser.add_argument("--sampler", choices=("fast", "hf"), default="fast",
                        help="Bridle's sampler: fast (its decode loop, the default) or hf (HF generate)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the last measured generation call of each framework (slows that call)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke run")
    parser.add_argument("--child", choices=("bridle", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child = child_bridle if args.child == "bridle" else child_trl
        print_result(child(args.data, json.loads(args.settings), args.out))
        return 0

    quick = args.quick
    group = args.group_size or (2 if quick else 8)
    prompts_per_step = args.prompts_per_step or (2 if quick else 4)
    settings = {"steps": args.steps if args.steps is not None else (1 if quick else 4), "warmup": args.warmup,
                "group_size": group, "prompts_per_step": prompts_per_step,
                "max_new_tokens": args.max_new_tokens or (8 if quick else 64), "batch_size": args.batch_size or group,
                "sampler": args.sampler, "profile": args.profile}
    per_step = prompts_per_step * group
    if min(settings["steps"], group - 1, prompts_per_step, settings["batch_size"]) < 1 or settings["warmup"] < 0 \
            or per_step % settings["batch_size"]:
        parser.error("need --steps >= 1, --group-size >= 2, --prompts-per-step >= 1, --warmup >= 0 and a "
                     "--batch-size that divides prompts-per-step × group-size")
    data_name = args.data or f"arithmetic_problems(n, seed={SEED})"
    base = {"benchmark": "grpo", "model": "SmolLM2-135M-Instruct", "dtype": "fp32", "data": data_name,
            **settings, "grad_accum": per_step // settings["batch_size"], "completions_per_step": per_step,
            "temperature": TEMPERATURE, "beta": BETA, "clip_eps": CLIP_EPS, "lr": LR, "reward": "math_exact_match",
            "loss": "grpo (per-completion token mean, then mean over completions)", "scale_rewards": "group std"}
    if args.data and not Path(args.data).is_file():
        print(json.dumps({**base, "skipped": f"data not found: {args.data}"}))
        return 0

    import torch
    import transformers
    import trl

    import bridle
    from bridle.models import resolve_model

    started = time.perf_counter()
    load_start = os.getloadavg()[0]  # other work on the machine skews every figure; reported at start and end
    resolve_model(MODEL_ALIAS)  # convert the embedded GGUF once, outside any measured child
    needed = prompts_per_step * (settings["warmup"] + settings["steps"])
    records = build_records(args.data, needed)
    if len(records) < needed:
        print(json.dumps({**base, "skipped": f"{len(records)} prompts, {needed} needed"}))
        return 0
    log(f"{len(records)} prompts, {per_step} completions per step; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="bridle-bench-grpo-") as tmp:
        work = Path(tmp)
        data = work / "prompts.jsonl"
        write_jsonl(data, records)
        ours = run_child("bridle", data, settings, work)
        ordered = [records[row - 1] for row in ours["prompt_rows"]]  # rows are 1-based lines of the file
        trl_data = work / "prompts_in_bridle_order.jsonl"
        write_jsonl(trl_data, ordered)
        theirs = run_child("trl", trl_data, settings, work)
    from sft import matmul_peak_gflops  # the project's one way of measuring the peak

    peak = max(matmul_peak_gflops().values())
    shape = ours["model_shape"]
    ours, theirs = {**ours, **decode_bound(ours, shape, peak)}, {**theirs, **decode_bound(theirs, shape, peak)}
    same_prompts = [prompt_key(r["prompt"]) for r in ordered] == theirs["prompts"]
    line = {**base, "prompts": len(records), "same_prompts": same_prompts,
            "bridle": rounded(ours), "trl": rounded(theirs),
            "rollout_throughput_ratio": round(ours["rollout_tokens_per_s"] / theirs["rollout_tokens_per_s"], 3),
            "update_throughput_ratio": round(ours["update_tokens_per_s"] / theirs["update_tokens_per_s"], 3),
            "end_to_end_ratio": round(ours["completions_per_s"] / theirs["completions_per_s"], 3),
            "memory_ratio": round(ours["peak_gib"] / theirs["peak_gib"], 3), "matmul_peak_gflops": round(peak, 1),
            "counts": COUNTS, "differences": DIFFERENCES, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)], "bridle_version": bridle.__version__,
            "trl_version": trl.__version__, "transformers_version": transformers.__version__,
            "torch_version": torch.__version__, "wall_seconds": round(time.perf_counter() - started, 1)}
    from common import print_final  # the versions of every package measured go with the line

    print_final(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
