"""`bridle sft` end to end on a tiny random model: outputs, errors, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from bridle.cli.main import build_parser, main
from bridle.config import fields_of
from bridle.methods.sft import SFTConfig

QA = [("What is 2 plus 2?", "2 plus 2 is 4."), ("Name a color.", "Blue is a color."),
      ("Say hello.", "Hello!"), ("What is the capital of France?", "Paris is the capital of France."),
      ("Count to three.", "One, two, three."), ("Spell cat.", "C, A, T.")]


def write_chats(path: Path, repeat: int = 4) -> Path:
    with open(path, "w") as handle:
        for _ in range(repeat):
            for q, a in QA:
                messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                handle.write(json.dumps({"messages": messages}) + "\n")
    return path


def common_flags(model_dir: Path, data: Path, out: Path) -> list[str]:
    return ["sft", "--model", str(model_dir), "--data", str(data), "--output-dir", str(out), "--max-length", "256",
            "--batch-size", "4", "--lr", "3e-3", "--seed", "3", "--log-every", "1", "--no-progress"]


def test_sft_cli_trains_and_writes_a_loadable_hf_checkpoint(tiny_model_dir, tmp_path):
    data = write_chats(tmp_path / "chats.jsonl")
    out = tmp_path / "run"
    assert main(common_flags(tiny_model_dir, data, out) + ["--epochs", "3", "--eval-fraction", "0.2"]) == 0
    for name in ("config.yaml", "metrics.jsonl", "run.json", "model/config.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    assert train[-1]["loss"] < train[0]["loss"]  # it learns the training set
    assert any("eval/loss" in r for r in rows)
    assert all(r["tokens_per_s"] > 0 for r in train)
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 3 and len(run["data_fingerprint"]) == 16 and "torch" in run["versions"]
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size


def test_sft_cli_with_lora_saves_adapter_or_merged_model(tiny_model_dir, tmp_path):
    data = write_chats(tmp_path / "chats.jsonl", repeat=1)
    out = tmp_path / "lora"
    flags = common_flags(tiny_model_dir, data, out) + ["--max-steps", "2", "--lora", "--lora-r", "4", "--merge-lora"]
    assert main(flags) == 0
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_help_lists_every_config_key_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sft", "--help"])
    text = capsys.readouterr().out
    for f in fields_of(SFTConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "(default: 'smollm2-135m')" in text and "(default: True)" in text


def test_bad_row_stops_with_file_row_and_field_and_skip_mode_trains(tiny_model_dir, tmp_path, capsys):
    data = write_chats(tmp_path / "chats.jsonl", repeat=1)
    with open(data, "a") as handle:
        handle.write(json.dumps({"prompt": "Hi", "completion": ""}) + "\n")
    out = tmp_path / "bad"
    assert main(common_flags(tiny_model_dir, data, out) + ["--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert f"bridle: {data}, row 7" in err and '"completion"' in err and "--on-bad-row skip" in err
    assert main(common_flags(tiny_model_dir, data, out) + ["--max-steps", "1", "--on-bad-row", "skip"]) == 0


def test_unknown_model_directory_is_a_clear_error(tmp_path, capsys):
    data = write_chats(tmp_path / "chats.jsonl", repeat=1)
    assert main(common_flags(tmp_path / "nope", data, tmp_path / "o")) == 2
    assert "no such directory" in capsys.readouterr().err


def run_cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bridle.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_resume_after_sigkill_reaches_the_same_weights_as_an_uninterrupted_run(tiny_model_dir, tmp_path):
    data = write_chats(tmp_path / "chats.jsonl", repeat=3)
    flags = ["--max-steps", "9", "--save-every", "3", "--grad-accum", "2", "--neftune-alpha", "5",
             "--warmup-ratio", "0.2"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = run_cli(common_flags(tiny_model_dir, data, whole) + flags)
    assert done.returncode == 0, done.stderr
    killed = run_cli(common_flags(tiny_model_dir, data, broken) + flags, {"BRIDLE_FAULT_KILL_AT_STEP": "5"})
    assert killed.returncode == -signal.SIGKILL
    assert not (broken / "model").exists()  # it died mid-run: steps 4-5 are lost, the checkpoint at 3 is not
    resumed = run_cli(common_flags(tiny_model_dir, data, broken) + flags + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "step-0000003" in resumed.stderr
    a = load_file(str(whole / "model" / "model.safetensors"))
    b = load_file(str(broken / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 9 and steps.count(4) == 1  # killed steps logged once
