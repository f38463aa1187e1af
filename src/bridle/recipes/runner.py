"""Running a recipe: each stage in order, into <output_dir>/<stage>/, skipped when it already ran with the same
config and inputs.

A relative path in a stage's keys that names a file or folder beside the recipe file is read from there (so the
shipped examples run from any working directory); anything else (a model alias, a hub id) is passed as written.

A stage's fingerprint covers what it computes from: its kind and target, its keys with references resolved, and the
fingerprint of each input (an earlier stage's fingerprint for `${stage.output}`, a file's bytes, a directory's file
list with sizes and times). lineage.json in the stage's directory records it with the inputs, versions and status.

- same fingerprint, status done → skipped ("up to date");
- same fingerprint, not done (killed) → run again in place: training stages with --resume auto (they continue from
  their newest checkpoint, with --save-every), commands resume from the rows they already wrote;
- another fingerprint, or `--from` this stage or an earlier one → the stage's directory is cleared and it runs anew.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bridle.errors import BridleError, ConfigError
from bridle.recipes.spec import REFERENCE, Recipe, Stage, command_argv

LINEAGE = "lineage.json"
STATE = "recipe_state.json"


def _say(text: str) -> None:
    from bridle.engine.logging import console

    console.print(text, markup=False, soft_wrap=True)


def path_fingerprint(path: Path) -> str:
    """A file's bytes, or a directory's files (relative path, size, mtime), hashed; 16 hex digits."""
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    elif path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = item.stat()
            digest.update(f"{item.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class RecipeRun:
    """One execution of a recipe: stage directories, resolved keys, fingerprints and the state file."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.root = recipe.output_dir
        self.fingerprints: dict[str, str] = {}
        self.statuses: dict[str, dict[str, Any]] = {}

    def stage_dir(self, stage: Stage) -> Path:
        return self.root / stage.name

    def output_path(self, stage_name: str, output: str) -> Path:
        stage = self.recipe.stage(stage_name)
        relative = stage.outputs[output]
        return self.stage_dir(stage) if relative == "." else self.stage_dir(stage) / relative

    def resolve(self, stage: Stage) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The stage's keys with every ${stage.output} replaced by its path, and the inputs they name."""
        inputs: list[dict[str, str]] = []

        def fill(value: Any, key: str) -> Any:
            if isinstance(value, str):
                def sub(match: Any) -> str:
                    ref_stage, _, output = match.group(1).partition(".")
                    path = self.output_path(ref_stage.strip(), output.strip())
                    inputs.append({"key": key, "name": match.group(0), "path": str(path),
                                   "fingerprint": self.fingerprints[ref_stage.strip()]})
                    return str(path)
                filled = REFERENCE.sub(sub, value)
                if filled == value:
                    beside = self.recipe.path.parent / value
                    if not Path(value).expanduser().is_absolute() and value and beside.exists():
                        filled = str(beside.resolve())  # a relative path is read beside the recipe file
                    local = Path(filled).expanduser()
                    if local.is_file() or local.is_dir():
                        inputs.append({"key": key, "name": value, "path": str(local.resolve()),
                                       "fingerprint": path_fingerprint(local)})
                return filled
            if isinstance(value, list):
                return [fill(v, key) for v in value]
            if isinstance(value, dict):
                return {k: fill(v, key) for k, v in value.items()}
            return value
        return {k: fill(v, k) for k, v in stage.keys.items()}, inputs

    def fingerprint(self, stage: Stage, keys: dict[str, Any], inputs: list[dict[str, str]]) -> str:
        blob = json.dumps({"kind": stage.kind, "target": stage.target, "keys": keys,
                           "inputs": [(i["key"], i["fingerprint"]) for i in inputs]}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def read_lineage(self, stage: Stage) -> dict[str, Any] | None:
        path = self.stage_dir(stage) / LINEAGE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def write_lineage(self, stage: Stage, lineage: dict[str, Any]) -> None:
        path = self.stage_dir(stage) / LINEAGE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(lineage, indent=1, default=str))
        partial.replace(path)

    def write_state(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        stages = [{"name": s.name, "command": s.target, "kind": s.kind, "dir": s.name,
                   **self.statuses.get(s.name, {"status": "pending", "seconds": None, "stopped_by": None})}
                  for s in self.recipe.stages]
        (self.root / STATE).write_text(json.dumps({"name": self.recipe.name, "recipe": str(self.recipe.path),
                                                   "stages": stages}, indent=1))

    def clear(self, stage: Stage) -> None:
        """Remove a stage's directory before running it anew: only one this recipe made (it has lineage.json)."""
        directory = self.stage_dir(stage)
        if not directory.exists():
            return
        if not (directory / LINEAGE).is_file():
            raise BridleError(f"{directory} exists but was not made by this recipe (no {LINEAGE}); move it away or "
                              "choose another output_dir.")
        shutil.rmtree(directory)

    def run_stage(self, stage: Stage, keys: dict[str, Any]) -> str | None:
        """Run one stage into its directory; returns why it stopped early (training stages), if it did."""
        directory = self.stage_dir(stage)
        if stage.kind == "method":
            from bridle.cli.main import print_note
            from bridle.config import build_config
            from bridle.methods import METHODS
            from bridle.methods.runner import run

            cls = METHODS[stage.target]
            finished = _finished_run(directory)
            if finished is not None:  # killed after the run ended but before the lineage said so
                _say(f"{stage.name}: {directory} holds its finished run; not training again")
                return finished.get("stopped_by")
            config = build_config(cls.Config, None, {**keys, "output_dir": str(directory), "resume": "auto"},
                                  note=print_note, owner=f"stage {stage.name} (`bridle {stage.target}`)")
            result = run(cls, config)
            return result.stopped_by
        from bridle.cli.main import main

        argv = [stage.target, *command_argv(keys), "--output-dir", str(directory)]
        code = main(argv)
        if code != 0:
            raise BridleError(f"stage {stage.name} (`bridle {' '.join(argv)}`) failed with exit code {code}; fix it "
                              f"and run the recipe again: finished stages are skipped.")
        return None


def _finished_run(directory: Path) -> dict[str, Any] | None:
    """run.json of a finished training run in `directory`, else None."""
    try:
        info = json.loads((directory / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "finished" in info else None


def run_recipe(recipe: Recipe, *, start_from: str | None = None, report: bool | None = None) -> Path:
    """Run every stage that is not up to date (see the module docstring); returns the recipe's output dir."""
    import bridle
    from bridle.methods.runner import versions

    if start_from is not None and start_from not in {s.name for s in recipe.stages}:
        raise ConfigError(f"--from {start_from}: no such stage; stages: {', '.join(s.name for s in recipe.stages)}.")
    state = RecipeRun(recipe)
    state.root.mkdir(parents=True, exist_ok=True)
    if recipe.path.resolve() != (state.root / "recipe.yaml").resolve():
        shutil.copyfile(recipe.path, state.root / "recipe.yaml")
    forced = False
    for index, stage in enumerate(recipe.stages, start=1):
        forced = forced or stage.name == start_from
        keys, inputs = state.resolve(stage)
        fingerprint = state.fingerprint(stage, keys, inputs)
        state.fingerprints[stage.name] = fingerprint
        before = state.read_lineage(stage)
        head = f"[{index}/{len(recipe.stages)}] {stage.name} ({stage.kind} {stage.target})"
        same = before is not None and before.get("fingerprint") == fingerprint
        if same and before.get("status") == "done" and not forced:
            _say(f"{head}: up to date, skipped")
            state.statuses[stage.name] = {"status": "skipped", "seconds": before.get("seconds"),
                                          "stopped_by": before.get("stopped_by")}
            state.write_state()
            continue
        if forced or not same:
            why = "--from" if forced else ("its config or inputs changed" if before else "first run")
            if before is not None:
                _say(f"{head}: running anew ({why})")
            state.clear(stage)
        else:
            _say(f"{head}: resuming (it was interrupted)")
        lineage = {"stage": stage.name, "kind": stage.kind, "command": stage.target, "fingerprint": fingerprint,
                   "config": keys, "inputs": inputs, "versions": {**versions(), "bridle": bridle.__version__},
                   "outputs": {name: str(state.output_path(stage.name, name)) for name in stage.outputs},
                   "argv": sys.argv, "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        state.write_lineage(stage, lineage)
        state.statuses[stage.name] = {"status": "running", "seconds": None, "stopped_by": None}
        state.write_state()
        _say(f"{head}: → {state.stage_dir(stage)}")
        started = time.perf_counter()
        try:
            stopped_by = state.run_stage(stage, keys)
        except BaseException:
            state.statuses[stage.name] = {"status": "failed", "seconds": round(time.perf_counter() - started, 1),
                                          "stopped_by": None}
            lineage["status"] = "failed"
            state.write_lineage(stage, lineage)
            state.write_state()
            raise
        seconds = round(time.perf_counter() - started, 1)
        lineage.update(status="done", seconds=seconds, stopped_by=stopped_by,
                       finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        state.write_lineage(stage, lineage)
        state.statuses[stage.name] = {"status": "stopped" if stopped_by else "done", "seconds": seconds,
                                      "stopped_by": stopped_by}
        state.write_state()
    if recipe.report if report is None else report:
        write_report_if_possible(state.root)
    return state.root


def write_report_if_possible(root: Path) -> Path | None:
    """report.html in the recipe's output dir (`bridle report`); a note instead when the report cannot be made."""
    try:
        from bridle.report import write_report
    except ImportError:
        _say("report skipped: bridle.report is not available")
        return None
    path = write_report(root)
    _say(f"report: {path}")
    return path
