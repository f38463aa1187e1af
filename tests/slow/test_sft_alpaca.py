"""Real check: SFT of the embedded SmolLM2-135M on a few hundred real instructions lowers held-out loss."""

from __future__ import annotations

import gzip
import json

import pytest

from bridle.cli.main import main

pytestmark = pytest.mark.slow


def instruction_rows(shared_data) -> list[dict]:
    """Alpaca (100) + Self-Instruct seed tasks (175) as prompt/completion chats."""
    rows = []
    with gzip.open(shared_data / "alpaca" / "alpaca_tiny_100.jsonl.gz", "rt") as handle:
        for line in handle:
            r = json.loads(line)
            prompt = r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")
            rows.append((prompt, r["output"]))
    with gzip.open(shared_data / "self-instruct" / "seed_tasks.jsonl.gz", "rt") as handle:
        for line in handle:
            r = json.loads(line)
            inst = r["instances"][0]
            prompt = r["instruction"] + (f"\n\n{inst['input']}" if inst["input"] else "")
            rows.append((prompt, inst["output"]))
    return [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}]}
            for p, c in rows]


def test_sft_on_real_instructions_lowers_held_out_loss(shared_data, tmp_path):
    rows = instruction_rows(shared_data)
    assert len(rows) == 275
    train, held = rows[:235], rows[235:]
    for name, part in (("train", train), ("eval", held)):
        with open(tmp_path / f"{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in part)
    out = tmp_path / "run"
    code = main(["sft", "--model", "smollm2-135m", "--data", str(tmp_path / "train.jsonl"),
                 "--eval-data", str(tmp_path / "eval.jsonl"), "--output-dir", str(out), "--max-length", "256",
                 "--batch-size", "4", "--lr", "5e-5", "--epochs", "1", "--warmup-ratio", "0.1",
                 "--eval-on-start", "--log-every", "5", "--no-progress", "--on-bad-row", "skip"])
    assert code == 0
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if "eval/loss" in r]
    before, after = evals[0]["eval/loss"], evals[-1]["eval/loss"]
    print(f"held-out loss: before {before:.4f}, after {after:.4f} ({len(held)} examples)")
    assert evals[0]["step"] == 0
    assert after < before - 0.02
