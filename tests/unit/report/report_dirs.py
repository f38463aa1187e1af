"""Hand-made run directories in the formats `bridle eval`, the training runs and the recipe runner write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLANTED = "<script>window.__pwned = 1; alert(1)</script><img src=x onerror=\"window.__pwned = 2\">"
PROMPTS = [f"Question {i}: what is {i} + {i}?" for i in range(12)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def eval_report(**pair_changes: Any) -> dict[str, Any]:
    """A report.json of base vs tuned on 12 prompts, as `bridle eval` writes it (plus a "checks" object)."""
    pair = {"model_a": "base", "model_b": "tuned", "prompts": 12, "judged": 12, "unparsed": 0, "wins": 2, "ties": 2,
            "losses": 8, "win_rate": 0.25, "win_rate_interval": [0.0833, 0.4583], "tie_rate": 0.1667,
            "position_inconsistency_rate": 0.1667, "lc_win_rate": 0.27, "lc_win_rate_interval": [0.1, 0.45],
            "confidence": 0.95, **pair_changes}
    kl = "mean log-ratio of the model's answers (temperature 0.0: not samples of the model, so not a KL estimate)"
    models = {name: {"answers": 12, "length_chars": {"mean": mean, "median": mean, "p90": mean, "min": 1.0,
                                                     "max": mean},
                     "reward": {"mean": reward, "interval": [reward - 0.2, reward + 0.2], "n": 12},
                     "kl_to_reference": {"mean": klm, "interval": [klm - 0.01, klm + 0.01], "n": 12, "estimator": kl}}
              for name, mean, reward, klm in (("base", 20.0, -0.5, 0.0), ("tuned", 31.0, 0.75, 0.42))}
    return {"prompts": 12, "models": models, "pairs": [pair], "judge": "local:judge-model", "resamples": 200,
            "seed": 0, "judge_saw_references": False, "data": "prompts.jsonl",
            "checks": {"exact_answer": {"base": {"rate": 0.25, "interval": [0.05, 0.5], "n": 12},
                                        "tuned": {"rate": 0.75, "interval": [0.5, 0.95], "n": 12}}}}


def write_eval_dir(directory: Path, report: dict[str, Any] | None = None) -> Path:
    """report.json, generations.jsonl (tuned's answer to prompt 3 is the planted script) and verdicts.jsonl."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report or eval_report(), indent=1))
    generations = []
    for model, reward_shift in (("base", -0.5), ("tuned", 0.75)):
        for i, prompt in enumerate(PROMPTS):
            output = PLANTED if (model, i) == ("tuned", 3) else f"{model} says {2 * i}"
            generations.append({"prompt_index": i, "model": model, "prompt": prompt, "output": output,
                                "reward": reward_shift + i / 100, "log_ratio": 0.0 if model == "base" else 0.4})
    write_jsonl(directory / "generations.jsonl", generations)
    verdicts = [{"prompt_index": i, "model_a": "base", "model_b": "tuned", "winner": "B" if i % 4 else "tie",
                 "winner_model": "tuned" if i % 4 else "tie", "outcome": 0.0 if i % 4 else 0.5,
                 "verdicts": ["B", "A"] if i == 0 else ["B", "B"], "position_consistent": i != 0,
                 "probabilities": [None, None], "raw": ["[[B]]", "[[B]]"], "rationales": ["", ""]}
                for i in range(12)]
    write_jsonl(directory / "verdicts.jsonl", verdicts)
    return directory


def training_metrics(steps: int, keys: dict[str, float]) -> list[dict[str, Any]]:
    """`steps` train rows with each key rising from its start value, and an eval row every 5 steps."""
    rows: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        rows.append({"step": step, **{k: v + 0.1 * step for k, v in keys.items()}})
        if step % 5 == 0:
            rows.append({"step": step, "eval/loss": 2.0 - 0.05 * step})
    return rows


def write_training_dir(directory: Path, method: str, rows: list[dict[str, Any]], *, torn: bool = True) -> Path:
    """run.json, config.yaml and metrics.jsonl (with a torn last line, as a killed run leaves)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.json").write_text(json.dumps({
        "method": method, "command": ["bridle", method, "--model", "tiny"], "seed": 0,
        "versions": {"bridle": "0.1.0", "torch": "2.13.0"}, "model": "models/tiny", "model_fingerprint": "abc123",
        "data": "data/train.jsonl", "data_fingerprint": "def456", "steps": len(rows), "finished": "2026-01-01",
        "train_seconds": 12.5}))
    (directory / "config.yaml").write_text(f"method: {method}\nlr: 1.0e-05\nnote: '<b>not bold</b>'\n")
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (directory / "metrics.jsonl").write_text(text + ('{"step": 99, "loss": 1.' if torn else ""))
    return directory


def write_recipe_dir(root: Path) -> Path:
    """A recipe of four stages: sft (done), ppo (done), eval (done), dpo (pending, nothing written)."""
    root.mkdir(parents=True, exist_ok=True)
    write_training_dir(root / "sft", "sft", training_metrics(12, {"loss": 2.0}))
    write_training_dir(root / "ppo", "ppo", training_metrics(8, {
        "loss": 1.0, "reward/mean": 0.0, "kl/ref": 0.0, "rollout/response_length": 20.0}), torn=False)
    write_eval_dir(root / "eval")
    stages = [("sft", "bridle sft", "done", 12.5), ("ppo", "bridle ppo", "done", 30.0),
              ("eval", "bridle eval", "done", 4.0), ("dpo", "bridle dpo", "pending", None)]
    state = {"name": "quick <recipe>", "stages": [
        {"name": n, "command": c, "status": s, "dir": n, "seconds": t, "stopped_by": None} for n, c, s, t in stages]}
    (root / "recipe_state.json").write_text(json.dumps(state))
    (root / "recipe.yaml").write_text("name: quick\nstages:\n  - sft: {}\n")
    for name, command, _, _ in stages[:3]:
        lineage = {"stage": name, "command": command, "config": {"lr": 1e-5, "note": "<i>x</i>"},
                   "inputs": [{"name": "model", "path": f"{root}/in/<model>", "fingerprint": f"fp-{name}"}],
                   "versions": {"bridle": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"},
                   "outputs": {"model": f"{name}/model"}}
        (root / name / "lineage.json").write_text(json.dumps(lineage))
    return root
