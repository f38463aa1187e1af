"""Recipe validation: every problem is found before anything runs, named by its line, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridle.errors import ConfigError
from bridle.recipes import load_recipe
from bridle.recipes.spec import command_argv

GOOD = """\
name: demo
stages:
  sft:
    method: sft
    model: smollm2-135m
    data: sft.jsonl
    max_steps: 4
  dpo:
    method: dpo
    model: ${sft.model}
    data: pairs.jsonl
  eval:
    command: eval
    data: prompts.jsonl
    model: {before: smollm2-135m, after: "${dpo.model}"}
    judge: rule:format_reward
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(write(tmp_path, text))
    return str(info.value)


def test_a_good_recipe_loads_in_order_with_its_references(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD))
    assert [(s.name, s.kind, s.target) for s in recipe.stages] == [
        ("sft", "method", "sft"), ("dpo", "method", "dpo"), ("eval", "command", "eval")]
    assert recipe.stage("dpo").references() == [("model", "sft", "model", 10)]
    assert recipe.output_dir == Path("runs/demo")


def test_unknown_method_is_named_by_line_with_a_suggestion(tmp_path):
    err = problem(tmp_path, GOOD.replace("method: dpo", "method: dop"))
    assert "recipe.yaml:9:" in err and "unknown method 'dop'" in err and "'dpo'" in err


def test_unknown_key_of_a_method_is_named_by_its_line(tmp_path):
    err = problem(tmp_path, GOOD.replace("    max_steps: 4", "    max_stepz: 4"))
    assert "recipe.yaml:7:" in err and "max_stepz" in err and "max_steps" in err


def test_a_type_error_names_the_key_and_line(tmp_path):
    err = problem(tmp_path, GOOD.replace("max_steps: 4", "max_steps: many"))
    assert "recipe.yaml:7:" in err and "max_steps" in err


def test_reference_to_a_missing_stage_or_output(tmp_path):
    err = problem(tmp_path, GOOD.replace("${sft.model}", "${sf.model}"))
    assert "recipe.yaml:10:" in err and "no stage named 'sf'" in err
    err = problem(tmp_path, GOOD.replace("${sft.model}", "${sft.weights}"))
    assert "recipe.yaml:10:" in err and "no output 'weights'" in err and "model" in err


def test_reference_to_a_later_stage_or_itself_is_a_cycle(tmp_path):
    err = problem(tmp_path, GOOD.replace("    model: smollm2-135m\n    data: sft.jsonl",
                                         "    model: ${dpo.model}\n    data: sft.jsonl"))
    assert "recipe.yaml:5:" in err and "cycle" in err and "runs after it" in err
    err = problem(tmp_path, GOOD.replace("${sft.model}", "${dpo.model}"))
    assert "refers to itself" in err


def test_unknown_command_flag_and_bad_flag_value(tmp_path):
    err = problem(tmp_path, GOOD.replace("judge: rule:format_reward", "judg: rule:format_reward"))
    assert "recipe.yaml:16:" in err and "no flag --judg" in err and "'judge'" in err
    err = problem(tmp_path, GOOD + "    limit: lots\n")
    assert "recipe.yaml:17:" in err and "limit" in err and "invalid int value" in err


def test_stage_kind_runner_keys_and_top_level_keys(tmp_path):
    err = problem(tmp_path, GOOD.replace("    method: sft\n", ""))
    assert "recipe.yaml:3:" in err and "exactly one of method:" in err
    err = problem(tmp_path, GOOD.replace("    max_steps: 4", "    output_dir: elsewhere"))
    assert "recipe.yaml:7:" in err and "set by the recipe" in err
    err = problem(tmp_path, "nmae: x\n" + GOOD)
    assert "recipe.yaml:1:" in err and "unknown key 'nmae'" in err


def test_rules_between_keys_are_checked_too(tmp_path):
    err = problem(tmp_path, GOOD.replace("    max_steps: 4", "    patience: 2"))
    assert "stage sft" in err and "--eval-every" in err


def test_every_problem_is_listed_at_once(tmp_path):
    err = problem(tmp_path, GOOD.replace("method: dpo", "method: dop").replace("judge:", "judg:"))
    assert "2 problems" in err or ("dop" in err and "judg" in err)


def test_command_argv_spells_lists_mappings_and_flags():
    assert command_argv({"model": {"a": "x", "b": "y"}, "generations": ["g1", "g2"], "no_progress": True,
                         "overwrite": False, "limit": 3}) == [
        "--model", "a=x", "--model", "b=y", "--generations", "g1", "--generations", "g2", "--no-progress",
        "--limit", "3"]


def test_every_shipped_recipe_validates():
    examples = Path(__file__).resolve().parents[3] / "examples"
    recipes = sorted(p for p in examples.glob("*.yaml") if "\nstages:" in p.read_text())  # not the --config files
    assert {p.stem for p in recipes} >= {"instructgpt", "dpo", "rlaif", "constitutional", "grpo-math", "lima"}
    for path in recipes:
        load_recipe(path)
