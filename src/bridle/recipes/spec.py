"""A recipe file and its validation: every problem found before any stage runs, each named by its line.

    name: instructgpt                 # the run: runs/<name>/ unless output_dir says otherwise
    stages:
      sft: {method: sft, model: smollm2-135m, data: sft.jsonl, max_steps: 40}
      rm:  {method: rm, model: "${sft.model}", data: pairs.jsonl}
      ppo: {method: ppo, model: "${sft.model}", reward: "${rm.model}", data: prompts.jsonl}
      eval:
        command: eval
        model: {before: smollm2-135m, after: "${ppo.model}"}
        judge: "rm:${rm.model}"

A stage is a training method (`method:`, its keys those of `bridle <method>`) or a data command (`command:` one of
COMMANDS, its keys the command's flags without "--"; a list repeats a flag, a mapping gives NAME=VALUE pairs, true
is a bare flag). `${stage.output}` names an earlier stage's output (OUTPUTS); stages run in the order written, so
a reference to a later stage (or to itself) is a cycle. Each stage's output_dir is runs/<name>/<stage>/, set here.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridle.errors import ConfigError

COMMANDS = ("eval", "rlaif", "constitute", "redteam", "curate")
METHOD_OUTPUTS = {"model": "model", "dir": ".", "run": "run.json", "metrics": "metrics.jsonl"}
OUTPUTS: dict[str, dict[str, str]] = {  # what `${stage.NAME}` means, as a path inside the stage's directory
    "eval": {"dir": ".", "report": "report.json", "generations": "generations.jsonl", "verdicts": "verdicts.jsonl"},
    "rlaif": {"dir": ".", "pairs": "pairs.jsonl", "report": "report.json"},
    "constitute": {"dir": ".", "sft": "sft.jsonl", "pairs": "preferences.jsonl", "trace": "trace.jsonl",
                   "report": "report.json"},
    "redteam": {"dir": ".", "pairs": "pairs.jsonl", "report": "report.json", "responses": "responses.jsonl"},
    "curate": {"dir": ".", "subset": "curated.jsonl", "report": "report.json"},
}
TOP_KEYS = ("name", "output_dir", "stages", "report")
STAGE_KIND_KEYS = ("method", "command")
RUNNER_KEYS = ("output_dir", "resume", "overwrite")  # set by the recipe runner, never by a stage
REFERENCE = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z][\w-]*$")


@dataclass
class Stage:
    """One stage as written: its name, kind ("method" or "command"), what it runs, its keys and their lines."""

    name: str
    kind: str
    target: str
    keys: dict[str, Any]
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    @property
    def outputs(self) -> dict[str, str]:
        return METHOD_OUTPUTS if self.kind == "method" else OUTPUTS[self.target]

    def references(self) -> list[tuple[str, str, str, int]]:
        """(key, stage, output, line) of every ${stage.output} in the stage's values."""
        found = []
        for key, value in self.keys.items():
            for text in _strings(value):
                for ref in REFERENCE.findall(text):
                    stage, _, output = ref.partition(".")
                    found.append((key, stage.strip(), output.strip(), self.key_lines.get(key, self.line)))
        return found


@dataclass
class Recipe:
    name: str
    path: Path
    stages: list[Stage]
    output_dir: Path
    report: bool = True

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _lines(node: yaml.Node) -> dict[str, tuple[int, yaml.Node]]:
    """A mapping node's keys → (1-based line, value node)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): (k.start_mark.line + 1, v) for k, v in node.value}


def load_recipe(path: str | Path, *, output_dir: str | Path | None = None) -> Recipe:
    """Read and validate a recipe; one ConfigError listing every problem with its line, before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found.")
    text = path.read_text(encoding="utf-8")
    try:
        node, data = yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping with name: and stages:.")
    top = _lines(node)
    problems: list[str] = []

    def problem(line: int, text: str) -> None:
        problems.append(f"{path}:{line}: {text}")

    for key, (line, _) in top.items():
        if key not in TOP_KEYS:
            problem(line, f"unknown key {key!r}; a recipe has {', '.join(TOP_KEYS)}.")
    name = data.get("name") or path.stem
    if not isinstance(name, str) or not _NAME.match(name):
        problem(top.get("name", (1, None))[0], f"name {name!r} must be a word (letters, digits, - and _).")
    stages_line, stages_node = top.get("stages", (1, None))
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, dict) or not raw_stages:
        problem(stages_line, "stages: must be a mapping of stage name → {method: ... | command: ..., keys}.")
        raw_stages = {}
    stage_lines = _lines(stages_node) if stages_node is not None else {}
    stages = []
    for stage_name, keys in raw_stages.items():
        line, stage_node = stage_lines.get(str(stage_name), (stages_line, None))
        stage = _read_stage(str(stage_name), keys, line, _lines(stage_node) if stage_node is not None else {},
                            problem)
        if stage is not None:
            stages.append(stage)
    for position, stage in enumerate(stages):
        earlier = {s.name: s for s in stages[:position]}
        later = {s.name for s in stages[position:]}
        for key, ref_stage, output, line in stage.references():
            if ref_stage in earlier:
                outputs = earlier[ref_stage].outputs
                if output not in outputs:
                    problem(line, f"stage {stage.name}, {key}: ${{{ref_stage}.{output}}}: stage {ref_stage} has no "
                                  f"output {output!r}; it has {', '.join(outputs)}.")
            elif ref_stage in later:
                what = "itself" if ref_stage == stage.name else f"stage {ref_stage}, which runs after it"
                problem(line, f"stage {stage.name}, {key}: ${{{ref_stage}.{output}}} refers to {what}: a cycle. "
                              "Stages run in the order written; refer only to earlier stages.")
            else:
                problem(line, f"stage {stage.name}, {key}: ${{{ref_stage}.{output}}}: no stage named {ref_stage!r} "
                              f"(stages: {', '.join(s.name for s in stages)}).")
    if not problems:
        for stage in stages:
            _check_keys(stage, stages, problem)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems in the recipe:\n" + "\n".join(f"- {p}" for p in problems))
    out = Path(output_dir or data.get("output_dir") or Path("runs") / name)
    return Recipe(name, path, stages, out, bool(data.get("report", True)))


def _read_stage(name: str, keys: Any, line: int, key_lines: dict[str, tuple[int, Any]], problem: Any
                ) -> Stage | None:
    from bridle.methods import METHODS

    if not _NAME.match(name):
        problem(line, f"stage name {name!r} must be a word (letters, digits, - and _).")
        return None
    if not isinstance(keys, dict):
        problem(line, f"stage {name}: write its keys as a mapping, with method: or command:.")
        return None
    kinds = [k for k in STAGE_KIND_KEYS if k in keys]
    if len(kinds) != 1:
        problem(line, f"stage {name}: give exactly one of method: (a training method: {', '.join(METHODS)}) or "
                      f"command: ({', '.join(COMMANDS)}).")
        return None
    kind, target = kinds[0], keys[kinds[0]]
    allowed = tuple(METHODS) if kind == "method" else COMMANDS
    if target not in allowed:
        import difflib

        close = difflib.get_close_matches(str(target), allowed, n=1)
        problem(key_lines.get(kind, (line,))[0], f"stage {name}: unknown {kind} {target!r}"
                + (f"; did you mean {close[0]!r}?" if close else f"; one of {', '.join(allowed)}."))
        return None
    values = {k.replace("-", "_") if kind == "method" else k: v for k, v in keys.items() if k != kind}
    lines = {(k.replace("-", "_") if kind == "method" else k): key_lines[k][0] for k in keys if k in key_lines}
    for key in values:
        if key.replace("-", "_") in RUNNER_KEYS:
            problem(lines.get(key, line), f"stage {name}: {key} is set by the recipe (each stage writes to "
                                          f"<output_dir>/{name}/ and resumes itself); remove it.")
    values = {k: v for k, v in values.items() if k.replace("-", "_") not in RUNNER_KEYS}
    return Stage(name, kind, str(target), values, line, lines)


def placeholder(stage: Stage, stages: list[Stage]) -> dict[str, Any]:
    """The stage's keys with every reference replaced by a stand-in path, for checking types and flags."""
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return REFERENCE.sub(lambda m: f"/recipe/{m.group(1).replace('.', '/')}", value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value
    return {k: fill(v) for k, v in stage.keys.items()}


def _check_keys(stage: Stage, stages: list[Stage], problem: Any) -> None:
    """Each key against what the method's config or the command's parser accepts, named by its line."""
    keys = placeholder(stage, stages)
    if stage.kind == "method":
        from bridle.config import read_keys
        from bridle.methods import METHODS

        cls = METHODS[stage.target].Config
        values, bad = {}, False
        for key, value in keys.items():
            try:
                values.update(read_keys(cls, {key: value}, f"stage {stage.name}", as_flag=False,
                                        owner=f"`bridle {stage.target}`")[0])
            except ConfigError as e:
                problem(stage.key_lines.get(key, stage.line), str(e))
                bad = True
        if not bad:  # the rules between keys (e.g. --patience needs --eval-every), as `bridle <method>` checks them
            from bridle.config_rules import problems_of

            for text in problems_of(cls(**{**values, "output_dir": ""})):
                problem(stage.line, f"stage {stage.name}: {text}")
        return
    parser = command_parser(stage.target)
    flags = {s for a in parser._actions for s in a.option_strings}
    for key, value in keys.items():
        flag = "--" + key.replace("_", "-")
        if flag not in flags:
            import difflib

            close = difflib.get_close_matches(flag, sorted(flags), n=1)
            problem(stage.key_lines.get(key, stage.line),
                    f"stage {stage.name}: `bridle {stage.target}` has no flag {flag}"
                    + (f"; did you mean {close[0][2:]!r}?" if close else "."))
            continue
        argv = [*command_argv({key: value}), "--output-dir", "/recipe/x"]
        message = _parse_error(parser, argv)
        if message and key.replace("_", "-") in message:
            problem(stage.key_lines.get(key, stage.line), f"stage {stage.name}, {key}: {message}")


def command_parser(command: str) -> Any:
    from bridle.cli.main import build_parser
    from bridle.cli.main import command_parser as find

    return find(build_parser(), command)


def _parse_error(parser: Any, argv: list[str]) -> str | None:
    """argparse's complaint about `argv` (type errors, bad choices), or None."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parser.parse_known_args(argv)
        except SystemExit:
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "cannot be parsed"
    return None


def command_argv(keys: dict[str, Any]) -> list[str]:
    """Flags of a command stage: key: value → --key value; true → --key; false/null → nothing; a list → the flag
    repeated; a mapping → --key NAME=VALUE for each entry."""
    argv: list[str] = []
    for key, value in keys.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, dict):
            for name, target in value.items():
                argv += [flag, f"{name}={target}"]
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv
