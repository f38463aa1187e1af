"""Read a run directory into the model of a report page: stages, their curves, evaluations, samples and lineage.

Three kinds of directory are read:

    RUN_DIR/recipe_state.json   a recipe: every stage in the recipe's order (each in RUN_DIR/<stage dir>)
    RUN_DIR/run.json            one training run (metrics.jsonl, config.yaml, run.json)
    RUN_DIR/report.json         one `bridle eval` output (report.json, generations.jsonl, verdicts.jsonl)

A file that is missing or damaged becomes a note on its stage, never a crash: a report is most wanted when a run
went wrong. Nothing here renders; `bridle.report.render` turns the `Page` into HTML.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridle.errors import BridleError
from bridle.report.headline import headlines
from bridle.report.plots import Plot, curves
from bridle.report.weak import eval_weaknesses, stage_weaknesses


@dataclass
class Answer:
    """One model's answer to one prompt, with its reward and log-ratio to the reference when measured."""

    output: str
    reward: float | None = None
    log_ratio: float | None = None


@dataclass
class Sample:
    """One prompt with every model's answer and every pair's verdict ("a vs b" → what the judge said)."""

    index: int
    prompt: str
    answers: dict[str, Answer]
    verdicts: dict[str, str]


@dataclass
class Evaluation:
    """A `bridle eval` output: its report.json, the reward model's win rates, sample answers and caveats."""

    report: dict[str, Any]
    models: list[str]
    reward_pairs: list[dict[str, Any]]
    samples: list[Sample]
    weaknesses: list[str]
    headlines: list[str]
    settings: dict[str, Any] | None = None


@dataclass
class Stage:
    """One stage of a recipe (or the one run of a single run dir) and what its directory holds."""

    name: str
    directory: Path
    kind: str  # "training", "evaluation", "other" (files but neither), "empty" (nothing written)
    command: str = ""
    status: str | None = None
    seconds: float | None = None
    stopped_by: str | None = None
    plots: list[Plot] = field(default_factory=list)
    logged_steps: int = 0
    evaluation: Evaluation | None = None
    lineage: dict[str, Any] | None = None
    run_info: dict[str, Any] | None = None
    config_text: str | None = None
    problems: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


@dataclass
class Page:
    """Everything one report shows."""

    title: str
    kind: str  # "recipe", "training run", "evaluation"
    source: Path
    stages: list[Stage]
    recipe_text: str | None = None

    @property
    def evaluations(self) -> list[Stage]:
        return [s for s in self.stages if s.evaluation is not None]


# ---- files ---------------------------------------------------------------------------------------------------


def read_json(path: Path, problems: list[str]) -> Any:
    """The JSON in `path`, or None (a note in `problems` when it exists but cannot be read)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} could not be read ({error}); its part of the report is left out.")
        return None


def read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a jsonl file; a line that is not one (a run killed while writing) is skipped with a
    note."""
    if not path.is_file():
        return []
    rows, bad = [], 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        problems.append(f"{path.name}: skipped {bad} line(s) that are not JSON objects (a torn last line is what a "
                        "killed run leaves).")
    return rows


def read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


# ---- evaluations ---------------------------------------------------------------------------------------------


def prompt_text(prompt: Any) -> str:
    """A prompt as plain text: a string as it is, chat messages as "role: content" lines."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, Mapping) for m in prompt):
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in prompt)
    return json.dumps(prompt, ensure_ascii=False)


def _float(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def verdict_text(row: Mapping[str, Any]) -> str:
    """What the judge said on one prompt, in words: the winner's name, "tie", or "unread"."""
    winner = row.get("winner")
    if winner is None:
        return "unread"
    text = "tie" if winner == "tie" else str(row.get("winner_model") or winner)
    if row.get("position_consistent") is False:
        text += " (the two orders disagreed)"
    return text


def pick_samples(generations: Sequence[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]],
                 models: Sequence[str], n: int, *, seed: int = 0) -> list[Sample]:
    """`n` prompts (all when there are no more; else a seeded choice, in prompt order) with each model's answer
    and each pair's verdict."""
    answers: dict[int, dict[str, Answer]] = {}
    prompts: dict[int, str] = {}
    for row in generations:
        i = row.get("prompt_index")
        if not isinstance(i, int) or row.get("model") not in models:
            continue
        prompts.setdefault(i, prompt_text(row.get("prompt", "")))
        answers.setdefault(i, {})[row["model"]] = Answer(str(row.get("output", "")), _float(row.get("reward")),
                                                         _float(row.get("log_ratio")))
    indexes = sorted(answers)
    if n <= 0:
        return []
    if len(indexes) > n:
        indexes = sorted(random.Random(seed).sample(indexes, n))
    said: dict[int, dict[str, str]] = {}
    for row in verdicts:
        if row.get("prompt_index") in answers:
            said.setdefault(row["prompt_index"], {})[f"{row.get('model_a')} vs {row.get('model_b')}"] = \
                verdict_text(row)
    return [Sample(i, prompts[i], answers[i], said.get(i, {})) for i in indexes]


def reward_win_rates(report: Mapping[str, Any], generations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each judged pair whose two models both have a reward on every prompt: the win rate of a over b by
    reward (higher wins, equal ties half) with its bootstrap interval over prompts, shaped as report.json's pairs."""
    from bridle.eval.winrate import win_rate

    rewards: dict[str, dict[int, float]] = {}
    for row in generations:
        value = _float(row.get("reward"))
        if value is not None and isinstance(row.get("prompt_index"), int):
            rewards.setdefault(str(row.get("model")), {})[row["prompt_index"]] = value
    out = []
    for pair in report.get("pairs") or []:
        a, b = pair.get("model_a"), pair.get("model_b")
        if a not in rewards or b not in rewards or set(rewards[a]) != set(rewards[b]) or not rewards[a]:
            continue
        outcomes = [1.0 if rewards[a][i] > rewards[b][i] else 0.5 if rewards[a][i] == rewards[b][i] else 0.0
                    for i in sorted(rewards[a])]
        found = win_rate(outcomes, resamples=int(report.get("resamples", 1000) or 0), seed=int(report.get("seed", 0)))
        interval = [None if x != x else x for x in found.interval]
        out.append({"model_a": a, "model_b": b, "prompts": found.n, "judged": found.n, "win_rate": found.win_rate,
                    "win_rate_interval": interval, "tie_rate": found.tie_rate, "wins": found.wins,
                    "ties": found.ties, "losses": found.losses})
    return out


def read_evaluation(directory: Path, problems: list[str], *, samples: int) -> Evaluation | None:
    report = read_json(directory / "report.json", problems)
    if not isinstance(report, dict):
        return None
    generations = read_jsonl(directory / "generations.jsonl", problems)
    verdicts = read_jsonl(directory / "verdicts.jsonl", problems)
    models = list(report.get("models") or {}) or list(dict.fromkeys(str(g.get("model")) for g in generations))
    reward_pairs = reward_win_rates(report, generations)
    chosen = pick_samples(generations, verdicts, models, samples, seed=int(report.get("seed", 0) or 0)) \
        if len(models) >= 2 else []
    settings = read_json(directory / "eval_settings.json", problems)
    return Evaluation(report, models, reward_pairs, chosen, eval_weaknesses(report, reward_pairs),
                      headlines(report, reward_pairs), settings if isinstance(settings, dict) else None)


# ---- stages and pages ----------------------------------------------------------------------------------------


def lineage_of_run(run: Mapping[str, Any]) -> dict[str, Any]:
    """A lineage record (as a recipe stage's lineage.json) from a single run's run.json."""
    inputs = [{"name": name, "path": run.get(name), "fingerprint": run.get(f"{name}_fingerprint")}
              for name in ("model", "data", "reference", "reward_model") if run.get(name)]
    command = run.get("command")
    return {"stage": run.get("method"), "command": " ".join(command) if isinstance(command, list) else command,
            "inputs": inputs, "versions": run.get("versions") or {}, "outputs": {}}


def read_stage(directory: Path, name: str, *, samples: int, entry: Mapping[str, Any] | None = None) -> Stage:
    """One stage directory: training curves (metrics.jsonl), an evaluation (report.json), lineage and config."""
    entry = entry or {}
    stage = Stage(name=name, directory=directory, kind="empty", command=str(entry.get("command") or ""),
                  status=entry.get("status"), seconds=_float(entry.get("seconds")), stopped_by=entry.get("stopped_by"))
    problems = stage.problems
    lineage = read_json(directory / "lineage.json", problems)
    run = read_json(directory / "run.json", problems)
    stage.run_info = run if isinstance(run, dict) else None
    stage.lineage = lineage if isinstance(lineage, dict) else lineage_of_run(run) if isinstance(run, dict) else None
    if (directory / "report.json").is_file():
        stage.kind = "evaluation"
        stage.evaluation = read_evaluation(directory, problems, samples=samples)
        settings = stage.evaluation.settings if stage.evaluation else None
        stage.config_text = json.dumps(settings, indent=1, ensure_ascii=False) if settings else None
    elif stage.run_info is not None or (directory / "metrics.jsonl").is_file():
        stage.kind = "training"
        records = read_jsonl(directory / "metrics.jsonl", problems)
        stage.logged_steps = len({r.get("step") for r in records})
        stage.plots = curves(records)
        stage.config_text = read_text(directory / "config.yaml")
    elif stage.lineage is not None:
        stage.kind = "other"
    if stage.config_text is None and stage.lineage and isinstance(stage.lineage.get("config"), Mapping):
        stage.config_text = json.dumps(stage.lineage["config"], indent=1, ensure_ascii=False)
    if not stage.command and stage.lineage:
        stage.command = str(stage.lineage.get("command") or "")
    if stage.run_info is not None:
        stage.seconds = stage.seconds if stage.seconds is not None else _float(stage.run_info.get("train_seconds"))
        stage.status = stage.status or ("done" if stage.run_info.get("finished") else None)
    stage.caveats = stage_weaknesses(name, stage.status, stage.stopped_by)
    return stage


def read_recipe(run_dir: Path, *, samples: int) -> Page:
    problems: list[str] = []
    state = read_json(run_dir / "recipe_state.json", problems)
    if not isinstance(state, dict) or not isinstance(state.get("stages"), list):
        why = "; ".join(problems) or 'it has no "stages" list'
        raise BridleError(f"{run_dir / 'recipe_state.json'} is not a recipe state ({why}). The recipe runner writes "
                          "it; rerun the recipe to write it again.")
    stages = []
    for entry in state["stages"]:
        if not isinstance(entry, Mapping) or "name" not in entry:
            continue
        directory = run_dir / str(entry.get("dir") or entry["name"])
        stages.append(read_stage(directory, str(entry["name"]), samples=samples, entry=entry))
    return Page(str(state.get("name") or run_dir.name), "recipe", run_dir, stages, read_text(run_dir / "recipe.yaml"))


def collect(run_dir: Path, *, samples: int = 8) -> Page:
    """The page of a recipe dir, a single training run dir, or a single `bridle eval` output dir."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BridleError(f"{run_dir} is not a directory. Pass a recipe's run dir, a training run's --output-dir "
                          "or a `bridle eval` --output-dir.")
    if (run_dir / "recipe_state.json").is_file():
        return read_recipe(run_dir, samples=samples)
    if (run_dir / "report.json").is_file():
        return Page(run_dir.name, "evaluation", run_dir, [read_stage(run_dir, run_dir.name, samples=samples)])
    if (run_dir / "run.json").is_file() or (run_dir / "metrics.jsonl").is_file():
        return Page(run_dir.name, "training run", run_dir, [read_stage(run_dir, run_dir.name, samples=samples)])
    raise BridleError(f"{run_dir} holds no recipe_state.json, run.json or report.json, so there is nothing to report. "
                      "Pass a recipe's run dir, a training run's --output-dir or a `bridle eval` --output-dir.")
