"""`bridle dpo | simpo | orpo | kto | rrhf` end to end on a tiny random model: a few steps each, outputs, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from bridle.cli.main import main

QA = [("What is 2 plus 2?", "2 plus 2 is 4.", "It is 5."), ("Name a color.", "Blue is a color.", "No."),
      ("Say hello.", "Hello!", "Go away."), ("What is the capital of France?", "Paris.", "London, of course."),
      ("Count to three.", "One, two, three.", "Four."), ("Spell cat.", "C, A, T.", "Dog.")]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    chat = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    pairs = [{"prompt": chat("user", q), "chosen": chat("assistant", c), "rejected": chat("assistant", r)}
             for q, c, r in QA]
    unpaired = [{"prompt": q, "completion": a, "label": good} for q, c, r in QA for a, good in ((c, True), (r, False))]
    ranked = [{"prompt": q, "responses": [c, r, "Maybe."], "scores": [2, 0, 1]} for q, c, r in QA]
    return {"pairs": write_jsonl(tmp_path / "pairs.jsonl", pairs),
            "unpaired": write_jsonl(tmp_path / "unpaired.jsonl", unpaired),
            "ranked": write_jsonl(tmp_path / "ranked.jsonl", ranked)}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "bridle-cache"
    monkeypatch.setenv("BRIDLE_CACHE", str(cache))
    return cache


def train(command: str, model_dir: Path, data: Path, out: Path, *extra: str) -> list[dict]:
    """Run a command; return its logged train rows (eval rows are left out)."""
    flags = [command, "--model", str(model_dir), "--data", str(data), "--output-dir", str(out), "--max-length", "128",
             "--batch-size", "2", "--lr", "1e-3", "--max-steps", "3", "--log-every", "1", "--no-progress", *extra]
    assert main(flags) == 0
    assert (out / "model" / "config.json").is_file() or (out / "model" / "adapter_config.json").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss" in r]


METRICS = ("loss", "reward/chosen", "reward/rejected", "reward/margin", "reward/accuracy", "logps/chosen")


def test_dpo_trains_starts_at_log2_logs_kl_and_reuses_the_reference_cache(tiny_model_dir, data, tmp_path,
                                                                          isolated_cache, capsys):
    rows = train("dpo", tiny_model_dir, data["pairs"], tmp_path / "a", "--eval-fraction", "0.3")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy = reference at step 1
    assert all(k in rows[0] for k in (*METRICS, "kl/chosen", "tokens_per_s"))
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert "eval/reward/accuracy" in (tmp_path / "a" / "metrics.jsonl").read_text()
    assert len(list((isolated_cache / "reference").glob("*.pt"))) == 1
    capsys.readouterr()
    train("dpo", tiny_model_dir, data["pairs"], tmp_path / "b", "--eval-fraction", "0.3")
    assert "from cache" in capsys.readouterr().err
    AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "model")


@pytest.mark.parametrize("loss", ["ipo", "robust", "hinge"])
def test_dpo_loss_variants_train(tiny_model_dir, data, tmp_path, loss):
    extra = ["--loss", loss] + (["--label-smoothing", "0.1"] if loss == "robust" else [])
    rows = train("dpo", tiny_model_dir, data["pairs"], tmp_path / loss, *extra)
    assert rows[-1]["reward/margin"] > rows[0]["reward/margin"]


def test_cdpo_with_lora_and_padding_free(tiny_model_dir, data, tmp_path):
    rows = train("dpo", tiny_model_dir, data["pairs"], tmp_path / "c", "--label-smoothing", "0.1", "--lora",
                 "--lora-r", "4", "--padding-free")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)


@pytest.mark.parametrize("command", ["simpo", "orpo"])
def test_reference_free_methods_train(tiny_model_dir, data, tmp_path, isolated_cache, command):
    rows = train(command, tiny_model_dir, data["pairs"], tmp_path / command)
    assert all(k in rows[0] for k in METRICS)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert not (isolated_cache / "reference").exists()  # no reference pass at all


@pytest.mark.parametrize("kind", ["unpaired", "pairs"])
def test_kto_trains_on_unpaired_data_or_split_pairs(tiny_model_dir, data, tmp_path, kind, capsys):
    rows = train("kto", tiny_model_dir, data[kind], tmp_path / kind, "--batch-size", "12")  # same batch each step
    assert "6 desirable, 6" in capsys.readouterr().err
    assert all(k in rows[0] for k in (*METRICS, "kl"))
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-4)  # 1 − σ(0) at the start, whatever the label
    assert rows[-1]["reward/margin"] > rows[0]["reward/margin"]  # (the loss itself moves with z0)


def test_rrhf_trains_on_ranked_data(tiny_model_dir, data, tmp_path):
    rows = train("rrhf", tiny_model_dir, data["ranked"], tmp_path / "rrhf")
    assert all(k in rows[0] for k in (*METRICS, "rank_loss", "nll"))
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_user_errors_name_what_to_change(tiny_model_dir, data, tmp_path, capsys):
    base = ["--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "e"), "--max-steps", "1", "--no-progress"]
    assert main(["dpo", "--data", str(data["pairs"]), "--loss", "ipo", "--label-smoothing", "0.1", *base]) == 2
    assert "--label-smoothing applies to" in capsys.readouterr().err
    assert main(["dpo", "--data", str(data["pairs"]), "--label-smoothing", "0.5", *base]) == 2
    assert "label_smoothing" in capsys.readouterr().err
    assert main(["rrhf", "--data", str(data["unpaired"]), *base]) == 2
    assert '"responses"' in capsys.readouterr().err
