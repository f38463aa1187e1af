"""A reward model trained on real hh-rlhf harmless-base pairs ranks held-out pairs better than chance.

Budget (CPU, 2 cores): SmolLM2-135M trains at roughly 100-150 tokens/s, so 240 pairs x 2 responses x <=256 tokens,
one epoch with LoRA (no weight gradients for the frozen body; the new head trains in full), plus scoring 300 held-out
pairs, takes about 10-15 minutes on an otherwise idle machine.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from bridle.cli.main import main

TRAIN_PAIRS = 240
HELD_OUT = 300


def split_hh(path: Path, out: Path) -> tuple[Path, Path]:
    """Seeded permutation of the file's rows: the first HELD_OUT are never seen in training."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [line for line in handle if line.strip()]
    random.Random(0).shuffle(rows)
    held, train = out / "held_out.jsonl", out / "train.jsonl"
    held.write_text("".join(rows[:HELD_OUT]))
    train.write_text("".join(rows[HELD_OUT:HELD_OUT + TRAIN_PAIRS]))
    return train, held


@pytest.mark.slow
def test_rm_on_hh_harmless_beats_chance_on_held_out_pairs(shared_data, tmp_path):
    train, held = split_hh(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz", tmp_path)
    out = tmp_path / "rm"
    assert main(["rm", "--model", "smollm2-135m", "--data", str(train), "--output-dir", str(out),
                 "--max-length", "256", "--batch-size", "4", "--lr", "1e-4", "--epochs", "1", "--warmup-ratio",
                 "0.1", "--lora", "--lora-r", "16", "--merge-lora", "--eval-fraction", "0.05", "--eval-every", "40",
                 "--log-every", "10",
                 "--on-bad-row", "skip", "--stats-max-responses", "200", "--seed", "0"]) == 0
    report_path = tmp_path / "eval.json"
    assert main(["eval-rm", "--model", str(out / "model"), "--data", str(held), "--on-bad-row", "skip",
                 "--output", str(report_path), "--batch-size", "16"]) == 0
    report = json.loads(report_path.read_text())
    run = json.loads((out / "run.json").read_text())
    print(f"\nheld-out pairs {report['pairs']}: accuracy {report['accuracy']:.3f} "
          f"CI95 [{report['accuracy_ci95'][0]:.3f}, {report['accuracy_ci95'][1]:.3f}], "
          f"chance 0.5, prefer-longer {report['baselines']['prefer_longer']:.3f}, "
          f"agreement with prefer-longer {report['agreement_with_prefer_longer']:.3f}, ECE {report['ece']:.3f}; "
          f"train {run['train_items']} pairs, {run['steps']} steps, {run['train_seconds']:.0f} s, "
          f"{run['tokens_per_second']:.0f} tokens/s; reward stats {run['reward_stats']}")
    assert report["pairs"] >= HELD_OUT - 5  # a few hh rows have an empty side and are skipped
    assert report["accuracy"] > 0.5
