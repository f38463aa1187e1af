"""`bridle quickstart`: alignment working on a laptop in minutes, shown with a before/after report.

    data (written here) ─► sft ─┬─► rm ─► ppo ─┐
                                └─► dpo ───────┴─► eval: base vs sft vs ppo vs dpo on held-out questions ─► report

It is a recipe (`bridle.recipes`): the quickstart writes its data and recipe.yaml into the output dir and runs it,
so a rerun skips what is done and an interrupted stage resumes. The eval stage judges every pair of models with the
reward model and reports rewards, KL to the base model and lengths; the quickstart adds the checkable metric (the
share of answers that are one short sentence, with a bootstrap interval) and writes report.html.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridle.quickstart.checks import one_short_sentence
from bridle.quickstart.data import write_data

CHECK = "one short sentence"


@dataclass(frozen=True)
class Profile:
    """How big each stage is. `cpu` takes about 7 minutes on 2 idle CPU cores; `tiny` is for tests on a tiny model."""

    held_out: int
    sft_steps: int
    rm_steps: int
    ppo_steps: int
    dpo_steps: int
    max_new_tokens: int
    eval_tokens: int


PROFILES = {"cpu": Profile(held_out=40, sft_steps=14, rm_steps=8, ppo_steps=8, dpo_steps=8, max_new_tokens=32,
                           eval_tokens=48),
            "tiny": Profile(held_out=6, sft_steps=2, rm_steps=2, ppo_steps=1, dpo_steps=2, max_new_tokens=6,
                            eval_tokens=6)}


def recipe(data: dict[str, Path], *, model: str, profile: Profile, seed: int = 0) -> dict[str, Any]:
    """The quickstart's recipe: SFT on the short answers; a reward model and DPO on (short ≻ long) pairs; PPO
    against the reward model; an eval of all four against each other on the held-out questions."""
    common = {"seed": seed, "progress": True, "log_every": 1, "max_length": 256, "lora": True, "merge_lora": True}
    return {"name": "quickstart", "stages": {
        "sft": {"method": "sft", "model": model, "data": str(data["sft"]), "max_steps": profile.sft_steps,
                "batch_size": 8, "lr": 1e-3, "lora_r": 16, **common},
        "rm": {"method": "rm", "model": "${sft.model}", "data": str(data["pairs"]), "max_steps": profile.rm_steps,
               "batch_size": 8, "lr": 1e-3, **common},
        "ppo": {"method": "ppo", "model": "${sft.model}", "reward": "${rm.model}", "data": str(data["prompts"]),
                "max_steps": profile.ppo_steps, "critic": "shared", "prompts_per_rollout": 8, "batch_size": 4,
                "grad_accum": 2, "update_epochs": 1, "max_new_tokens": profile.max_new_tokens, "lr": 5e-4,
                "beta": 0.05, "temperature": 1.0, **common},
        "dpo": {"method": "dpo", "model": "${sft.model}", "data": str(data["pairs"]),
                "max_steps": profile.dpo_steps, "batch_size": 8, "lr": 5e-4, "beta": 0.1, **common},
        "eval": {"command": "eval", "data": str(data["held_out"]),
                 "model": {"base": model, "sft": "${sft.model}", "ppo": "${ppo.model}", "dpo": "${dpo.model}"},
                 "judge": "rm:${rm.model}", "reward_model": "${rm.model}", "kl_reference": model,
                 "max_new_tokens": profile.eval_tokens, "temperature": 1.0, "seed": seed},
    }}


def add_checks(eval_dir: Path, *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """report.json's "checks": per model, the share of its answers that are one short sentence, with interval."""
    from bridle.eval.stats import mean_interval

    report_path = eval_dir / "report.json"
    report = json.loads(report_path.read_text())
    rows = [json.loads(line) for line in (eval_dir / "generations.jsonl").read_text().splitlines()]
    checks = {}
    for name in report["models"]:
        values = one_short_sentence([r["output"] for r in rows if r["model"] == name])
        m = mean_interval(values, resamples=resamples, seed=seed)
        checks[name] = {"rate": m.mean, "interval": list(m.interval), "n": m.n}
    report["checks"] = {CHECK: checks}
    report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report["checks"]


def run_quickstart(output_dir: str | Path = "runs/quickstart", *, model: str = "smollm2-135m",
                   profile: str = "cpu", seed: int = 0) -> Path:
    """Write the data and the recipe, run it, add the checks, write report.html; returns the report's path."""
    from bridle.engine.logging import console
    from bridle.recipes import load_recipe, run_recipe
    from bridle.recipes.runner import write_report_if_possible

    root = Path(output_dir)
    settings = PROFILES[profile]
    data = {k: v.resolve() for k, v in write_data(root / "data", held_out=settings.held_out, seed=seed).items()}
    path = root / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Written by `bridle quickstart`; rerun it with `bridle run " + str(path) + "`.\n"
                    + yaml.safe_dump(recipe(data, model=model, profile=settings, seed=seed), sort_keys=False))
    run_recipe(load_recipe(path, output_dir=root), report=False)
    checks = add_checks(root / "eval", seed=seed)[CHECK]
    for name, c in checks.items():
        console.print(f"{CHECK}: {name} {c['rate']:.0%} [{c['interval'][0]:.0%}, {c['interval'][1]:.0%}] "
                      f"of {c['n']} held-out answers")
    report = write_report_if_possible(root)
    return report or root
