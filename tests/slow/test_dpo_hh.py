"""DPO on real data: the embedded SmolLM2-135M-Instruct on hh-rlhf harmless pairs, LoRA, one epoch.

Pins two things: held-out implicit-reward accuracy (pairs never trained on) rises above chance, and the trained
model still answers a plain question. Minutes on a laptop CPU; run with `pytest -m slow tests/slow/test_dpo_hh.py -s`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from bridle.cli.main import main

TRAIN_PAIRS, HELD_OUT_PAIRS = 192, 128  # ~12 min on an idle 2-core CPU


@pytest.mark.slow
def test_dpo_on_hh_harmless_beats_chance_on_held_out_pairs_and_still_answers(shared_data: Path, tmp_path: Path):
    source = shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()][: TRAIN_PAIRS + HELD_OUT_PAIRS]
    (tmp_path / "train.jsonl").write_text("".join(lines[:TRAIN_PAIRS]))
    (tmp_path / "held_out.jsonl").write_text("".join(lines[TRAIN_PAIRS:]))
    out = tmp_path / "run"
    flags = ["dpo", "--model", "smollm2-135m", "--data", str(tmp_path / "train.jsonl"),
             "--eval-data", str(tmp_path / "held_out.jsonl"), "--output-dir", str(out), "--max-length", "256",
             "--batch-size", "8", "--epochs", "1", "--lora", "--lr", "3e-5", "--beta", "0.1", "--lr-schedule",
             "constant", "--log-every", "5", "--merge-lora", "--no-progress", "--on-bad-row", "skip",
             "--reference-cache", str(tmp_path / "ref-cache")]
    assert main(flags) == 0
    run = json.loads((out / "run.json").read_text())
    accuracy = run["eval_metrics"]["eval/reward/accuracy"]
    print(f"\nheld-out implicit-reward accuracy {accuracy:.3f} on {run['eval_items']} pairs; "
          f"eval margin {run['eval_metrics']['eval/reward/margin']:.4f}; train {run['train_metrics']}; "
          f"{run['tokens_per_second']:.0f} tokens/s, {run['train_seconds']:.0f} s")
    assert accuracy > 0.5

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        generated = model.generate(**ids, max_new_tokens=30, do_sample=False)
    answer = tokenizer.decode(generated[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"answer: {answer!r}")
    assert "Paris" in answer
