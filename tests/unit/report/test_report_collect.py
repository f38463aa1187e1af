"""Reading run directories into a report page: recipes, single runs, single evaluations, damaged files."""

from __future__ import annotations

import json

import pytest
from report_dirs import PLANTED, eval_report, training_metrics, write_eval_dir, write_recipe_dir, write_training_dir

from bridle.errors import BridleError
from bridle.report.collect import collect, pick_samples, prompt_text, reward_win_rates


def test_recipe_dir_gives_every_stage_in_order_with_its_contents(tmp_path):
    page = collect(write_recipe_dir(tmp_path / "run"))
    assert page.kind == "recipe" and page.title == "quick <recipe>" and page.recipe_text.startswith("name: quick")
    assert [(s.name, s.kind, s.status) for s in page.stages] == [
        ("sft", "training", "done"), ("ppo", "training", "done"), ("eval", "evaluation", "done"),
        ("dpo", "empty", "pending")]
    sft, ppo, ev, _ = page.stages
    loss = {s.key: len(s.steps) for s in sft.plots[0].series}
    assert loss == {"loss": 12, "eval/loss": 2}  # every logged step; the torn last line is dropped ...
    assert any("torn last line" in p for p in sft.problems)  # ... and said
    assert [p.name for p in ppo.plots] == ["loss", "reward", "kl", "length"]
    assert sft.lineage["inputs"][0]["fingerprint"] == "fp-sft" and sft.config_text.startswith("method: sft")
    assert ev.evaluation.report["pairs"][0]["win_rate"] == 0.25 and page.evaluations == [ev]
    assert ev.config_text is not None and "lr" in ev.config_text  # no eval_settings.json: the lineage's config


def test_single_training_run_dir_reads_lineage_from_run_json(tmp_path):
    page = collect(write_training_dir(tmp_path / "sft", "sft", training_metrics(4, {"loss": 1.0})))
    assert page.kind == "training run" and len(page.stages) == 1
    stage = page.stages[0]
    assert stage.status == "done" and stage.seconds == 12.5 and stage.command == "bridle sft --model tiny"
    assert stage.lineage["inputs"] == [{"name": "model", "path": "models/tiny", "fingerprint": "abc123"},
                                       {"name": "data", "path": "data/train.jsonl", "fingerprint": "def456"}]
    assert stage.logged_steps == 4


def test_single_eval_dir_samples_side_by_side(tmp_path):
    page = collect(write_eval_dir(tmp_path / "eval"), samples=5)
    ev = page.stages[0].evaluation
    assert page.kind == "evaluation" and ev.models == ["base", "tuned"]
    assert len(ev.samples) == 5 and [s.index for s in ev.samples] == sorted(s.index for s in ev.samples)
    assert all(set(s.answers) == {"base", "tuned"} for s in ev.samples)
    assert collect(tmp_path / "eval", samples=5).stages[0].evaluation.samples[0].index == ev.samples[0].index  # seeded
    every = collect(tmp_path / "eval", samples=50).stages[0].evaluation.samples
    assert [s.index for s in every] == list(range(12))
    assert every[3].answers["tuned"].output == PLANTED and every[3].answers["tuned"].reward == pytest.approx(0.78)
    assert every[0].verdicts == {"base vs tuned": "tie (the two orders disagreed)"}
    assert every[1].verdicts == {"base vs tuned": "tuned"}
    assert collect(tmp_path / "eval", samples=0).stages[0].evaluation.samples == []


def test_reward_win_rate_counts_prompts_where_a_scores_higher():
    generations = [{"prompt_index": i, "model": m, "reward": r} for i, (ra, rb) in
                   enumerate([(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (2.0, 1.0)]) for m, r in (("a", ra), ("b", rb))]
    report = {"pairs": [{"model_a": "a", "model_b": "b"}], "resamples": 100, "seed": 0}
    (found,) = reward_win_rates(report, generations)
    assert (found["wins"], found["ties"], found["losses"]) == (2, 1, 1)
    assert found["win_rate"] == pytest.approx(2.5 / 4) and found["judged"] == 4
    low, high = found["win_rate_interval"]
    assert low <= found["win_rate"] <= high
    assert reward_win_rates(report, [g for g in generations if g["model"] == "a"]) == []  # b has no rewards


def test_pick_samples_ignores_unknown_models_and_formats_chat_prompts():
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    rows = [{"prompt_index": 0, "model": "a", "prompt": chat, "output": "x"},
            {"prompt_index": 0, "model": "ghost", "prompt": chat, "output": "y"}]
    (sample,) = pick_samples(rows, [], ["a", "b"], 8)
    assert sample.prompt == "system: Be brief.\nuser: Hi" and list(sample.answers) == ["a"]
    assert prompt_text({"x": 1}) == '{"x": 1}'


def test_damaged_report_json_is_a_note_not_a_crash(tmp_path):
    root = write_recipe_dir(tmp_path / "run")
    (root / "eval" / "report.json").write_text('{"prompts": 1')
    page = collect(root)
    ev = page.stages[2]
    assert ev.evaluation is None and any("report.json could not be read" in p for p in ev.problems)


def test_failed_stage_becomes_a_caveat(tmp_path):
    root = write_recipe_dir(tmp_path / "run")
    state = json.loads((root / "recipe_state.json").read_text())
    state["stages"][1].update(status="stopped", stopped_by="kl above 10")
    (root / "recipe_state.json").write_text(json.dumps(state))
    assert collect(root).stages[1].caveats == [
        "stage ppo stopped by kl above 10: its outputs, and the stages that read them, are incomplete."]


def test_directories_without_a_run_are_refused_with_what_to_pass(tmp_path):
    with pytest.raises(BridleError, match="is not a directory"):
        collect(tmp_path / "missing")
    with pytest.raises(BridleError, match="no recipe_state.json, run.json or report.json"):
        collect(tmp_path)
    (tmp_path / "recipe_state.json").write_text("[]")
    with pytest.raises(BridleError, match='not a recipe state.*"stages"'):
        collect(tmp_path)


def test_eval_report_with_reward_gives_reward_pairs_and_weaknesses(tmp_path):
    page = collect(write_eval_dir(tmp_path / "eval", eval_report(position_inconsistency_rate=0.5)))
    ev = page.stages[0].evaluation
    assert ev.reward_pairs[0]["win_rate"] == 0.0  # tuned's reward is higher on every prompt
    assert any("verdicts depend on order" in w for w in ev.weaknesses)
    assert ev.headlines[0].startswith("Judge local:judge-model, 12 verdicts: tuned won 75% against base")
