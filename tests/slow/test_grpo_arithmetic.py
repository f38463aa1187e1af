"""GRPO raises the embedded SmolLM2-135M's exact-match accuracy on arithmetic problems it has never seen.

The problems are the project's own (`bridle make-arithmetic`: "What is a + b?", a, b in 1..20); held-out problems
use another seed. Before training the model answers about a third of them (greedy), often burying the answer in
rambling that ends on another number. Budget (CPU, 2 cores, idle): 16 rounds of 8 prompts x 8 samples, LoRA,
about 15 minutes.
"""

from __future__ import annotations

import json

import pytest

from bridle.cli.main import main
from bridle.data.arithmetic import write_arithmetic


def eval_curve(run_dir) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "eval/reward/math_exact_match" in r]


@pytest.mark.slow
def test_grpo_raises_held_out_exact_match_on_arithmetic(tmp_path):
    train = write_arithmetic(tmp_path / "train.jsonl", 400, seed=0)
    held = write_arithmetic(tmp_path / "held_out.jsonl", 64, seed=1)
    out = tmp_path / "grpo"
    assert main(["grpo", "--model", "smollm2-135m", "--data", str(train), "--eval-data", str(held),
                 "--reward", "math_exact_match", "--lora", "--lr", "5e-5", "--temperature", "0.9",
                 "--max-new-tokens", "32", "--prompts-per-rollout", "8", "--num-samples", "8", "--batch-size", "8",
                 "--grad-accum", "4", "--max-steps", "32", "--eval-every", "8", "--eval-on-start",
                 "--output-dir", str(out), "--seed", "0"]) == 0
    curve = eval_curve(out)
    before, after = curve[0], curve[-1]
    train_rows = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "reward/mean" in r]
    print(f"\nheld-out exact match {before['eval/reward/math_exact_match']:.3f} -> "
          f"{after['eval/reward/math_exact_match']:.3f} (64 problems, greedy); response length "
          f"{before['eval/response_length']:.1f} -> {after['eval/response_length']:.1f}; curve "
          f"{[round(r['eval/reward/math_exact_match'], 3) for r in curve]}; train reward first/last round "
          f"{train_rows[0]['reward/mean']:.3f}/{train_rows[-1]['reward/mean']:.3f}; "
          f"kl/ref_per_token last {train_rows[-1].get('kl/ref_per_token', 0):.4f}")
    assert (out / "reward.png").is_file() and (out / "kl.png").is_file() and (out / "entropy.png").is_file()
    assert after["eval/reward/math_exact_match"] > before["eval/reward/math_exact_match"]
