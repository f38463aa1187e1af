"""Reward sources: TRL-style functions from modules and files, their checked returns, weights, the missing-EOS
penalty, and a tiny saved reward model behind the same interface."""

from __future__ import annotations

import json

import pytest

from bridle.errors import ConfigError, ModelError
from bridle.feedback import CombinedReward, RewardModel, Sample, build_reward
from bridle.feedback.sources import FunctionSource, RewardModelSource

GOLD = "16 - 3 - 4 = 9 eggs, 9 * 2 = $18.\n#### 18"


def samples(*completions: str, finished: tuple[bool, ...] | None = None) -> list[Sample]:
    done = finished or (True,) * len(completions)
    return [Sample("How much does Janet make?", c, f, {"answer": GOLD, "id": i})
            for i, (c, f) in enumerate(zip(completions, done))]


class Fixed:
    """A stub source returning given values."""

    def __init__(self, name: str, values: list[float]) -> None:
        self.name, self.values = name, values

    def __call__(self, batch):
        return self.values[:len(batch)]


def write_rewards(tmp_path, body: str):
    path = tmp_path / "my_rewards.py"
    path.write_text(body)
    return path


def test_function_source_from_a_module_path_gets_columns_as_lists():
    source = FunctionSource("bridle.feedback.verifiers:math_exact_match")
    assert source.name == "math_exact_match"
    assert source(samples("so 18\nAnswer: 18", "#### 17")) == [1.0, 0.0]


def test_function_source_from_a_file_path_and_none_means_zero(tmp_path):
    path = write_rewards(tmp_path, (
        "def parity(prompts, completions, id, **kwargs):\n"
        "    assert isinstance(id, list) and len(id) == len(completions)\n"
        "    return [None if i == 0 else float(i) / 2 for i in id]\n"))
    source = FunctionSource(f"{path}:parity")
    assert source(samples("a", "b", "c")) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(("body", "match"), [
    ("return [1.0]", "returned 1 values for 2"),
    ("return [1.0, float('nan')]", r"returned nan for completion 1"),
    ("return [1.0, 'good']", r"returned 'good' for completion 1"),
    ("return 1.0", "must return a list of 2 floats"),
])
def test_bad_returns_name_the_function_and_the_value(tmp_path, body, match):
    path = write_rewards(tmp_path, f"def bad(prompts, completions, **kw):\n    {body}\n")
    with pytest.raises(ConfigError, match=match) as info:
        FunctionSource(f"{path}:bad")(samples("a", "b"))
    assert f"{path}:bad" in str(info.value)


@pytest.mark.parametrize("spec", ["no_such_package_xyz.rewards:fn", "bridle.feedback.verifiers:no_such_fn",
                                  "missing/file.py:fn", "bridle.feedback.verifiers"])
def test_import_failures_say_how_to_write_a_spec(spec):
    with pytest.raises(ConfigError, match="path/to/file.py:function") as info:
        FunctionSource(spec)
    assert spec in str(info.value)


def test_a_file_that_fails_to_import_is_a_config_error(tmp_path):
    path = write_rewards(tmp_path, "def broken(:\n")
    with pytest.raises(ConfigError, match="SyntaxError"):
        FunctionSource(f"{path}:broken")


def test_a_function_missing_its_column_names_the_columns():
    source = FunctionSource("bridle.feedback.verifiers:math_exact_match")
    with pytest.raises(ConfigError, match=r"answer"):
        source([Sample("q", "18", True, {"question_id": 3})])


def test_weighted_sum_and_missing_eos_penalty_by_hand():
    # total = 0.5·a + 2·b − 1.0·[unfinished]
    # sample 0: 0.5·1 + 2·0.25 = 1.0;  sample 1: 0.5·(−2) + 2·1 − 1 = 0.0;  sample 2: 0 + 2·(−0.5) − 1 = −2.0
    combined = CombinedReward([(0.5, Fixed("a", [1.0, -2.0, 0.0])), (2.0, Fixed("b", [0.25, 1.0, -0.5]))],
                              missing_eos_penalty=1.0)
    batch = combined(samples("x", "y", "z", finished=(True, False, False)))
    assert batch.total == pytest.approx([1.0, 0.0, -2.0])
    assert batch.parts == {"a": [1.0, -2.0, 0.0], "b": [0.25, 1.0, -0.5]}


def test_duplicate_names_are_kept_apart_in_parts():
    batch = CombinedReward([(1.0, Fixed("rm", [1.0])), (1.0, Fixed("rm", [2.0]))])(samples("x"))
    assert batch.parts == {"rm": [1.0], "rm_2": [2.0]} and batch.total == [3.0]


def test_build_reward_parses_weights_builtins_and_files(tmp_path):
    path = write_rewards(tmp_path, "def const(prompts, completions, **kw):\n    return [3.0] * len(completions)\n")
    combined = build_reward(f"0.5*math_exact_match, format_answer_line ,-1e-1 * {path}:const",
                            missing_eos_penalty=0.25)
    assert [w for w, _ in combined.sources] == [0.5, 1.0, -0.1]
    batch = combined(samples("work\nAnswer: 18", "18", finished=(True, False)))
    # sample 0: 0.5·1 + 1·1 − 0.1·3 = 1.2;  sample 1: 0.5·1 + 1·0 − 0.1·3 − 0.25 = −0.05
    assert batch.total == pytest.approx([1.2, -0.05])
    assert set(batch.parts) == {"math_exact_match", "format_answer_line", "const"}


@pytest.mark.parametrize("spec", ["", "  ", "math_exact_match,,length_limit", "no_such_reward"])
def test_build_reward_rejects_empty_and_unknown_entries(spec):
    with pytest.raises(ConfigError, match="reward model directory"):
        build_reward(spec)


# ---- a tiny saved reward model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_rm_dir(tiny_model_dir, tmp_path_factory):
    import torch

    from bridle.models import load_tokenizer, save_model
    from bridle.models.reward import load_reward_model

    torch.manual_seed(0)
    out = save_model(load_reward_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir)),
                     tmp_path_factory.mktemp("rm") / "rm")
    (out / "reward_stats.json").write_text(json.dumps({"mean": 0.5, "std": 2.0, "max_length": 64,
                                                       "max_prompt_length": 32}))
    return out


def test_reward_model_source_loads_lazily_and_normalizes_with_saved_stats(tiny_rm_dir):
    batch = samples("Janet makes $18.", "No idea.")
    source = RewardModelSource(tiny_rm_dir, batch_size=1)
    assert source._model is None  # nothing loaded until the first call
    raw = RewardModel.load(tiny_rm_dir).score([s.prompt for s in batch], [s.completion for s in batch])
    assert source(batch) == pytest.approx([(r - 0.5) / 2.0 for r in raw], abs=1e-5)
    combined = build_reward(f"2*{tiny_rm_dir}", normalize=False)
    assert combined(batch).total == pytest.approx([2 * r for r in raw], abs=1e-5)
    assert combined(batch).parts == {"rm": pytest.approx(raw, abs=1e-5)}


def test_normalizing_a_reward_model_without_stats_is_a_model_error(tiny_rm_dir, tmp_path):
    import shutil

    bare = shutil.copytree(tiny_rm_dir, tmp_path / "bare")
    (bare / "reward_stats.json").unlink()
    with pytest.raises(ModelError, match="without --normalize"):
        RewardModelSource(bare)(samples("x"))
    assert len(RewardModelSource(bare, normalize=False)(samples("x"))) == 1
