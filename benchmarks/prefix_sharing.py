"""Prefix sharing on its own: forward + backward of the same hh-rlhf pairs, prefix-shared against plain rows.

    python benchmarks/prefix_sharing.py [--pairs 4] [--repeats 5] [--max-length 512] [--method dpo|rm] [--threads N]
                                        [--fit-only] [--profile]

The deciding measurement for `--prefix-sharing`'s default. Model: the embedded SmolLM2-135M (a causal LM for dpo,
a 1-label classifier for rm), fp32, sdpa. Data: the first `--pairs` hh-rlhf harmless-base test pairs, tokenized by
Bridle (pairs longer than --max-length are truncated as training truncates them). One timed unit = collate + the
method's `step` (log-probs or rewards and the loss) + backward, alternating shared and plain so load drifts hit
both alike; the median of `--repeats` after one warm-up each. Prints ONE JSON
line: the prompt-token share of the data, tokens per layout, median wall and process-CPU seconds (the steadier figure
on a shared machine), the speed-ups, and both losses (equal within float tolerance).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--method", choices=("dpo", "rm"), default="dpo")
    parser.add_argument("--fit-only", action="store_true",
                        help="only pairs whose both sides fit in --max-length, as benchmarks/dpo.py and rm.py take")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0 = torch's default); 1 gives the steadiest CPU seconds on a busy machine")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, one profiled unit per layout: the top ops by CPU time, on stderr")
    args = parser.parse_args()

    from bridle.data import load_rows, normalize
    from bridle.data.preference import build_pairs
    from bridle.data.shared_prefix import prompt_token_share
    from bridle.methods.dpo import SimPO, SimPOConfig
    from bridle.methods.rm import RewardModelling, RMConfig
    from bridle.models import load_causal_lm, load_tokenizer, resolve_model

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path, max_length=args.max_length)
    records, _ = normalize(load_rows(str(HH))[:40 * args.pairs], "preference", on_bad_row="skip")
    pairs, _ = build_pairs(records, tokenizer, max_length=args.max_length)
    pairs = [p for p in pairs if not (args.fit_only and p.truncated)][:args.pairs]
    groups = [(p.chosen, p.rejected) for p in pairs]
    share, kept = prompt_token_share(groups)
    methods: dict[str, Any] = {}
    for on in (True, False):
        # SimPO stands in for the DPO family (the same log-probs; no reference pass to set up)
        if args.method == "dpo":
            methods[str(on)] = SimPO(SimPOConfig(model=path, prefix_sharing=on), tokenizer)
        else:
            methods[str(on)] = RewardModelling(RMConfig(model=path, prefix_sharing=on), tokenizer)
    model = load_causal_lm(path) if args.method == "dpo" else methods["True"].build_model()
    model.train()
    times: dict[str, list[float]] = {"True": [], "False": []}
    cpu: dict[str, list[float]] = {"True": [], "False": []}  # process CPU seconds: steadier on a shared machine
    losses: dict[str, float] = {}
    for repeat in range(args.repeats + 1):
        for key, method in methods.items():
            model.zero_grad(set_to_none=True)
            t0, c0 = time.perf_counter(), time.process_time()
            batch = method.collate(pairs)
            loss = method.step(model, batch).loss
            loss.backward()
            elapsed, cpu_s = time.perf_counter() - t0, time.process_time() - c0
            print(f"repeat {repeat} shared={key}: {elapsed:.2f} s wall, {cpu_s:.2f} s CPU, "
                  f"loss {float(loss.detach()):.6f}", file=sys.stderr)
            if repeat:
                times[key].append(elapsed)
                cpu[key].append(cpu_s)
            losses[key] = float(loss.detach())
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for key, method in methods.items():
            model.zero_grad(set_to_none=True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                method.step(model, method.collate(pairs)).loss.backward()
            print(f"--- profile, prefix_sharing={key}", file=sys.stderr)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr)
    shared_s, plain_s = statistics.median(times["True"]), statistics.median(times["False"])
    print(json.dumps({"benchmark": "prefix_sharing", "method": args.method, "pairs": len(pairs),
                      "prompt_token_share": round(share, 3), "shared_tokens_share": round(kept, 3),
                      "plain_tokens": sum(len(s.input_ids) for g in groups for s in g),
                      "shared_seconds": round(shared_s, 3), "plain_seconds": round(plain_s, 3),
                      "speedup": round(plain_s / shared_s, 3),
                      "shared_cpu_seconds": round(statistics.median(cpu["True"]), 3),
                      "plain_cpu_seconds": round(statistics.median(cpu["False"]), 3),
                      "cpu_speedup": round(statistics.median(cpu["False"]) / statistics.median(cpu["True"]), 3),
                      "load_avg_1m": round(os.getloadavg()[0], 2), "loss_shared": losses["True"],
                      "loss_plain": losses["False"], "torch_threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
