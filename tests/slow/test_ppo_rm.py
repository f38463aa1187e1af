"""PPO against a reward model trained by `bridle rm` raises the mean held-out reward while the KL to the reference
stays under its target (RLHF's three stages, minus SFT: the embedded SmolLM2-135M-Instruct is already tuned).

Stage 2: a LoRA reward model on 160 hh-rlhf harmless-base pairs (as in test_rm_hh). Stage 3: PPO on other
harmless-base prompts, LoRA policy with a value head on its trunk, adaptive KL toward --kl-target. The held-out
reward is the same RM's normalized score of greedy answers to 64 prompts neither stage trained on.
Budget (CPU, 2 cores, idle): about 20-25 minutes.
"""

from __future__ import annotations

import gzip
import json
import random

import pytest

from bridle.cli.main import main

RM_PAIRS, PPO_PROMPTS, HELD_OUT = 160, 96, 64
KL_TARGET = 4.0


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ppo_raises_held_out_reward_with_kl_under_target(shared_data, tmp_path):
    with gzip.open(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [line for line in handle if line.strip()]
    random.Random(0).shuffle(rows)
    held, prompts, pairs = (tmp_path / "held.jsonl", tmp_path / "prompts.jsonl", tmp_path / "pairs.jsonl")
    held.write_text("".join(rows[:HELD_OUT]))
    prompts.write_text("".join(rows[HELD_OUT:HELD_OUT + PPO_PROMPTS]))
    pairs.write_text("".join(rows[HELD_OUT + PPO_PROMPTS:HELD_OUT + PPO_PROMPTS + RM_PAIRS]))

    rm = tmp_path / "rm"
    assert main(["rm", "--model", "smollm2-135m", "--data", str(pairs), "--output-dir", str(rm),
                 "--max-length", "256", "--batch-size", "4", "--lr", "1e-4", "--epochs", "1", "--warmup-ratio", "0.1",
                 "--lora", "--merge-lora", "--on-bad-row", "skip", "--stats-max-responses", "160",
                 "--seed", "0"]) == 0

    ppo = tmp_path / "ppo"
    assert main(["ppo", "--model", "smollm2-135m", "--data", str(prompts), "--eval-data", str(held),
                 "--reward", str(rm / "model"), "--on-bad-row", "skip", "--lora", "--critic", "shared",
                 "--lr", "2e-4", "--beta", "0.05", "--kl-target", str(KL_TARGET), "--kl-horizon", "200",
                 "--max-new-tokens", "32", "--max-prompt-length", "128", "--temperature", "1.0",
                 "--prompts-per-rollout", "16", "--batch-size", "4", "--grad-accum", "4", "--update-epochs", "2",
                 "--max-steps", "24", "--eval-every", "12", "--eval-on-start", "--output-dir", str(ppo),
                 "--seed", "0"]) == 0
    metrics = read_metrics(ppo)
    evals = [m for m in metrics if "eval/reward/mean" in m]
    train = [m for m in metrics if "kl/ref" in m]
    before, after = evals[0]["eval/reward/mean"], evals[-1]["eval/reward/mean"]
    kls = [m["kl/ref"] for m in train]
    print(f"\nheld-out reward (normalized RM score, {HELD_OUT} prompts, greedy) {before:.3f} -> {after:.3f}; "
          f"curve {[round(m['eval/reward/mean'], 3) for m in evals]}; train reward first/last "
          f"{train[0]['reward/score']:.3f}/{train[-1]['reward/score']:.3f}; KL per response max {max(kls):.3f}, "
          f"last {kls[-1]:.3f} (target {KL_TARGET}); β {train[0]['kl/coef']:.4f} -> {train[-1]['kl/coef']:.4f}")
    assert (ppo / "reward.png").is_file() and (ppo / "kl.png").is_file() and (ppo / "entropy.png").is_file()
    assert after > before
    assert max(kls) < KL_TARGET
