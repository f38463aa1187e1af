"""Stopping criteria: the pure rules (parsing, name resolution, patience) by hand, and their wiring into the engine:
a run with --stop-when or --patience ends at the step the rule says, records why, and saves its model."""

from __future__ import annotations

import json

import pytest
import torch

from bridle.config_rules import problems_of
from bridle.data import TokenizedExample
from bridle.engine import Engine
from bridle.engine.stopping import StopCondition, Stopping, parse_stop_when, patience_direction, resolve_metric
from bridle.errors import ConfigError
from bridle.methods.sft import SFT, SFTConfig
from bridle.models import tiny_causal_lm, tiny_tokenizer

# ---- the rules ---------------------------------------------------------------------------------------------------


def test_conditions_parse_with_spaces_signs_and_exponents():
    assert parse_stop_when("eval/reward>=0.8, kl > 6,loss<1e-3") == [
        StopCondition("eval/reward", ">=", 0.8), StopCondition("kl", ">", 6.0), StopCondition("loss", "<", 1e-3)]
    assert parse_stop_when("") == [] and parse_stop_when(" , ") == []
    assert parse_stop_when("reward/mean<=-2.5") == [StopCondition("reward/mean", "<=", -2.5)]


@pytest.mark.parametrize("bad", ["kl", "kl >> 6", "kl = 6", "6 < kl", "kl > six", "kl>6; loss<1"])
def test_unreadable_conditions_say_how_to_write_them(bad):
    with pytest.raises(ConfigError, match="METRIC OP NUMBER"):
        parse_stop_when(bad)


def test_a_name_resolves_to_itself_then_mean_then_ref():
    assert resolve_metric("kl", {"kl/ref": 1.0, "kl/ref_per_token": 0.1}) == "kl/ref"
    assert resolve_metric("reward", {"reward/mean": 1.0, "reward/std": 2.0}) == "reward/mean"
    assert resolve_metric("reward", {"reward": 3.0, "reward/mean": 1.0}) == "reward"
    assert resolve_metric("eval/reward", {"eval/reward/accuracy": 0.7}) is None


def test_each_operator_holds_exactly_where_it_should():
    at = {"x": 6.0}
    assert [StopCondition("x", op, 6.0).check(at) is not None for op in (">=", "<=", ">", "<")] == \
        [True, True, False, False]
    assert StopCondition("x", ">", 5.0).check(at) == "x=6 > 5"
    assert StopCondition("x", ">", 5.0).check({"x": float("nan")}) is None


def test_first_holding_condition_stops_and_eval_conditions_wait_for_an_evaluation():
    stop = Stopping("eval/reward>=0.8, kl>6")
    assert stop.check({"kl/ref": 5.0}) is None
    assert stop.check({"kl/ref": 5.0}, {"eval/reward/mean": 0.9}) == \
        "stop_when eval/reward>=0.8: eval/reward/mean=0.9 >= 0.8"
    assert stop.check({"kl/ref": 6.5}) == "stop_when kl>6: kl/ref=6.5 > 6"


def test_a_condition_on_a_metric_the_run_never_logs_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="logs no metric 'kll'.*It logs: kl/ref, loss"):
        Stopping("kll>6").check({"kl/ref": 1.0, "loss": 2.0})
    Stopping("eval/acc>0.5").check({"loss": 1.0})  # eval conditions are checked at the first evaluation
    with pytest.raises(ConfigError, match="eval/acc"):
        Stopping("eval/acc>0.5").check({"loss": 1.0}, {"eval/loss": 1.0})


def test_patience_counts_evaluations_without_improvement_by_hand():
    stop = Stopping(patience=2, patience_metric="eval/loss")
    trace = [stop.check({}, {"eval/loss": v}) for v in (1.0, 0.8, 0.9, 0.8, 0.7, 0.75, 0.71)]
    # best 1.0, 0.8 (better), 0.9 (1 bad), 0.8 (equal: 2 bad -> stop)
    assert trace[:3] == [None, None, None] and trace[3] is not None and "0.8" in trace[3]
    up = Stopping(patience=1, patience_metric="eval/reward/accuracy")
    assert up.direction == "max"
    assert [up.check({}, {"eval/reward/accuracy": v}) is None for v in (0.5, 0.6, 0.55)] == [True, True, False]
    assert stop.check({"loss": 0.1}) is None  # patience looks at evaluations only


def test_patience_direction():
    assert [patience_direction(m, "auto") for m in ("eval/loss", "eval/kl/ref", "eval/reward/mean")] == \
        ["min", "min", "max"]
    assert patience_direction("eval/loss", "max") == "max"


def test_config_rules_name_the_stop_keys():
    assert any("METRIC OP NUMBER" in p for p in problems_of(SFTConfig(stop_when="kl 6")))
    assert any("--eval-every" in p for p in problems_of(SFTConfig(patience=2)))
    assert not problems_of(SFTConfig(stop_when="loss<1", patience=2, eval_every=5))


# ---- the engine --------------------------------------------------------------------------------------------------

X = -100
ROWS = [([1, 40, 41], [50, 51, 2]), ([1, 70], [80, 81, 2]), ([1, 100, 101], [110, 2]), ([1, 120], [130, 2])]


def train(tmp_path, **overrides):
    examples = [TokenizedExample(input_ids=p + c, labels=[X] * len(p) + c) for p, c in ROWS]
    keys = {"output_dir": str(tmp_path / "run"), "packing": False, "max_length": 64, "lr": 3e-2, "max_steps": 30,
            "batch_size": 4, "lr_schedule": "constant", "progress": False, "log_every": 5, **overrides}
    torch.manual_seed(0)
    config = SFTConfig(**keys)
    engine = Engine(config, tiny_causal_lm(seed=0), SFT(config, tiny_tokenizer()), examples, examples)
    result = engine.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return result, rows


def test_stop_when_ends_the_run_at_the_first_step_whose_loss_crosses_the_bound(tmp_path):
    full, full_rows = train(tmp_path / "full", log_every=1)
    losses = [r["loss"] for r in full_rows if "loss" in r]
    bound = (losses[0] + losses[-1]) / 2  # crossed somewhere in the middle of the run
    first = next(i for i, v in enumerate(losses) if v < bound) + 1  # 1-based step
    assert 1 < first < 30
    stopped, rows = train(tmp_path / "stopped", stop_when=f"loss<{bound}")
    assert stopped.steps == first and stopped.stopped_by.startswith(f"stop_when loss<{bound:g}")
    assert [r["step"] for r in rows if "loss" in r][-1] == first  # the stopping step is logged, off the cadence
    assert full.stopped_by is None and full.steps == 30


def test_patience_stops_after_that_many_evaluations_without_improvement(tmp_path):
    # lr 0: the eval loss never improves on the first evaluation, so patience 2 stops at the third evaluation
    result, rows = train(tmp_path, lr=0.0, eval_every=3, patience=2)
    assert result.steps == 9 and "patience" in result.stopped_by
    assert [r["step"] for r in rows if "eval/loss" in r][:3] == [3, 6, 9]


def test_a_stopped_run_records_why_in_run_json(tmp_path, tiny_model_dir):
    from bridle.cli.main import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(8)))
    out = tmp_path / "run"
    assert main(["sft", "--model", str(tiny_model_dir), "--data", str(data), "--output-dir", str(out), "--max-steps",
                 "20", "--batch-size", "4", "--stop-when", "loss<1000", "--no-progress"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["steps"], run["planned_steps"]) == (1, 20) and run["stopped_by"].startswith("stop_when loss<1000")
    assert (out / "model").is_dir()
