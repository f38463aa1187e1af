"""1 process against 2 at the same global batch: `bridle sft` as a user runs it, one process (1 and 2 threads), two
processes with data parallel, two with FSDP (gloo on CPU). Prints one JSON line: per run its wall and training
seconds, tokens/s, MFU against the fp32 matmul peak measured in the same run, the peak RSS of its largest process,
its loss and gradient-norm curves, and how far its final weights are from the first run's; then the ratios.

    python benchmarks/processes.py                       # SmolLM2-135M (the embedded model), 4 steps
    python benchmarks/processes.py --model tiny --steps 2

There is no peer in this one: TRL's multi-process path is accelerate's, the same one Bridle uses, so the figure of
interest is Bridle's own 1 vs N (the same training, and what the processes cost on this machine)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, bench_logger, print_final  # noqa: E402

FSDP = REPO / "configs" / "accelerate" / "fsdp.yaml"
QUESTIONS = ["What is 2 plus 2?", "Name a color.", "Say hello.", "What is the capital of France?",
             "Count to three.", "Spell cat."]
ANSWERS = ["2 plus 2 is 4.", "Blue is a color.", "Hello!", "Paris is the capital of France.", "One, two, three.",
           "C, A, T."]
# run a command, then print the largest resident set of it and its descendants (KiB), as GNU time's %M does
MAX_RSS = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
           "print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(code)")


def write_chats(path: Path, rows: int) -> Path:
    with open(path, "w") as handle:
        for i in range(rows):
            messages = [{"role": "user", "content": f"{QUESTIONS[i % 6]} ({i})"},
                        {"role": "assistant", "content": ANSWERS[i % 6]}]
            handle.write(json.dumps({"messages": messages}) + "\n")
    return path


def run(name: str, flags: list[str], out: Path, env: dict[str, str], log: Any) -> dict[str, Any]:
    """One `bridle sft` run under the RSS wrapper: its figures, read from its run files."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MAX_RSS, sys.executable, "-m", "bridle.cli.main", "sft", *flags,
                           "--output-dir", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    rss = int(done.stderr.rsplit("MAXRSS_KIB", 1)[1].split()[0])
    info = json.loads((out / "run.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    log(f"{name}: {wall:.1f} s, {info['tokens_per_second']:.1f} tokens/s")
    return {"wall_seconds": round(wall, 2), "train_seconds": round(info["train_seconds"], 2),
            "tokens_per_s": round(info["tokens_per_second"], 2), "peak_gib": round(rss / 2**20, 3),
            "losses": [round(r["loss"], 6) for r in rows if "loss" in r],
            "grad_norms": [round(r["grad_norm"], 6) for r in rows if "grad_norm" in r],
            "load_avg_1m_before": round(load, 2)}


def max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rows", type=int, default=24)
    args = parser.parse_args()
    log = bench_logger("processes")
    from sft import matmul_peak_gflops  # the peak on the model's projection shapes, as the other benchmarks
    from transformers import AutoConfig, AutoModelForCausalLM

    work = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    try:
        data = write_chats(work / "chats.jsonl", args.rows)
        flags = ["--model", args.model, "--data", str(data), "--max-length", "256", "--lr", "1e-5", "--seed", "3",
                 "--log-every", "1", "--no-progress", "--max-steps", str(args.steps)]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        runs = {  # name: (extra flags, extra environment)
            "one_process_2_threads": (["--batch-size", "4"], {}),
            "one_process_1_thread": (["--batch-size", "4"], {"OMP_NUM_THREADS": "1"}),
            "two_processes_ddp": (["--batch-size", "2", "--num-processes", "2"], {}),
            "two_processes_fsdp": (["--batch-size", "2", "--num-processes", "2", "--accelerate-config", str(FSDP)],
                                   {}),
        }
        results = {name: run(name, flags + extra, work / name, {**env, **more}, log)
                   for name, (extra, more) in runs.items()}
        first = work / "one_process_2_threads"
        peak = max(matmul_peak_gflops().values())
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(first / "model"))
        params = sum(p.numel() for p in model.parameters())
        for name, result in results.items():
            result["max_weight_difference"] = max_weight_difference(first, work / name)
            result["mfu"] = round(6 * params * result["tokens_per_s"] / (peak * 1e9), 4)
        base = results["one_process_2_threads"]["tokens_per_s"]
        print_final({"benchmark": "processes", "model": args.model, "steps": args.steps, "global_batch": 4,
                     "rows": args.rows, "max_length": 256, "cpus": os.cpu_count(), "parameters": params,
                     "matmul_peak_gflops": round(peak, 1), "runs": results,
                     "tokens_per_s_vs_one_process_2_threads": {
                         name: round(r["tokens_per_s"] / base, 3) for name, r in results.items()},
                     "max_loss_difference": max(abs(a - b) for r in results.values() for a, b in
                                                zip(r["losses"], results["one_process_2_threads"]["losses"]))})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
