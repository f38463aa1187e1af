"""`bridle ppo | grpo | rloo | raft` end to end on a tiny random model and arithmetic prompts: outputs, critic and
LoRA variants, a trained reward model as the reward, resume after SIGKILL, and user errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from bridle.cli.main import main
from bridle.data.arithmetic import write_arithmetic
from bridle.feedback import RewardModel
from bridle.methods import online

REWARD = "math_exact_match,0.5*format_answer_line"
# A reward that varies between random responses (the verifiers give a random model 0 everywhere), so updates are
# not all zero where a test needs the weights to move.
LETTERS = ("def letters(completions, **_):\n"
           "    return [sum(c.isalpha() for c in t) / max(len(t), 1) for t in completions]\n")
# Per method: flags that make a round of 2 prompts × 2 samples = 4 responses, one optimizer step per round.
SHAPE = ["--prompts-per-rollout", "2", "--num-samples", "2", "--batch-size", "4", "--grad-accum", "1",
         "--update-epochs", "1"]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_arithmetic(tmp_path_factory.mktemp("data") / "arithmetic.jsonl", 16, seed=1)


@pytest.fixture(scope="module")
def letters_reward(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rewards") / "letters.py"
    path.write_text(LETTERS)
    return f"{path}:letters"


def flags(command: str, model_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [command, "--model", str(model_dir), "--data", str(data), "--output-dir", str(out), "--max-new-tokens",
            "6", "--lr", "1e-3", "--log-every", "1", "--seed", "0", "--no-progress", *extra]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def check_outputs(out: Path, steps: int, *, kl: bool = True) -> list[dict]:
    """The files every online run writes; returns the logged train rows."""
    for name in ("config.yaml", "run.json", "metrics.jsonl", "reward.png", "entropy.png", "loss.png"):
        assert (out / name).is_file(), name
    assert (out / "kl.png").is_file() == kl
    rows = records(out)
    train = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, steps + 1))
    keys = {"reward/mean", "reward/math_exact_match", "reward/format_answer_line", "rollout/entropy",
            "rollout/response_length", "rollout/finished", "epoch", "lr", "tokens_per_s"}
    for row in train:
        assert keys <= row.keys(), keys - row.keys()
        assert bool({"kl/ref", "kl/ref_per_token"} & row.keys()) == kl  # GRPO logs its (token-mean) KL per token
        assert 0 <= row["rollout/response_length"] <= 6 and row["rollout/entropy"] > 0
    evals = [r for r in rows if "eval/reward/mean" in r]
    assert len(evals) == 1 and "eval/response_length" in evals[0]  # greedy answers to the held-out prompts
    run = json.loads((out / "run.json").read_text())
    assert run["steps"] == steps and run["train_items"] == 12 and run["eval_items"] == 4
    assert sorted(Path(p).name for p in run["plots"]) == sorted(p.name for p in out.glob("*.png"))
    return train


def max_change(model_dir: Path, start_dir: Path) -> float:
    trained, start = load_file(str(model_dir / "model.safetensors")), load_file(str(start_dir / "model.safetensors"))
    return max(float((trained[k] - start[k]).abs().max()) for k in start)


@pytest.mark.parametrize(("command", "extra", "kl"), [
    ("ppo", ["--critic", "shared", "--kl-target", "1.0", "--num-samples", "1", "--prompts-per-rollout", "4"], True),
    ("rloo", [], True),
    ("raft", ["--keep", "1", "--prompts-per-rollout", "4"], False),
])
def test_online_methods_train_and_write_model_metrics_and_plots(tiny_model_dir, prompts, letters_reward, tmp_path,
                                                                 command, extra, kl):
    out = tmp_path / command
    # the verifiers give a random model 0 everywhere; the letters reward varies, so there is something to learn
    args = flags(command, tiny_model_dir, prompts, out, "--reward", f"{REWARD},{letters_reward}", "--max-steps", "2",
                 "--eval-fraction", "0.25", "--eval-prompts", "4", *SHAPE, *extra)
    assert main(args) == 0
    train = check_outputs(out, 2, kl=kl)
    per_round = 4 if "4" in extra else 2  # prompts per round, one optimizer step each
    assert [r["epoch"] for r in train] == pytest.approx([per_round / 12, 2 * per_round / 12])
    assert train[0]["reward/std"] > 0 and train[0]["reward/letters"] > 0  # a learning signal
    assert max_change(out / "model", tiny_model_dir) > 1e-5  # the policy moved
    for row in train:  # one micro-batch per step, so each logged loss is that step's objective
        if command == "ppo":  # total = policy loss + vf_coef (0.1) · value loss
            assert row["loss"] == pytest.approx(row["loss/policy"] + 0.1 * row["loss/value"], abs=1e-6)
            assert abs(row["loss/value"]) > 1e-4
        if command == "rloo":  # r = score − β·KL (β = 0.05), averaged
            assert row["reward/with_kl"] == pytest.approx(row["reward/mean"] - 0.05 * row["kl/ref"], abs=1e-6)
        if command == "raft":  # the kept best of each 2 samples score at least their group's mean
            assert row["reward/kept"] >= row["reward/mean"] - 1e-9
    if command == "ppo":  # adaptive β: round 0's KL is 0 (π = π_ref), below the target 1, so the error is clipped
        # to −0.2 and β = 0.05 · (1 − 0.2 · 4 responses / 10,000 horizon) for round 1
        assert train[0]["kl/coef"] == pytest.approx(0.05)
        assert train[1]["kl/coef"] == pytest.approx(0.05 * (1 - 0.2 * 4 / 10_000), rel=1e-9)
        assert train[0]["kl/ref"] == pytest.approx(0.0, abs=1e-4)
    if command == "raft":
        assert train[0]["reward/kept"] > train[0]["reward/mean"]
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size


def test_grpo_with_lora_saves_an_adapter_and_uses_the_disabled_adapter_as_reference(tiny_model_dir, prompts,
                                                                                  letters_reward, tmp_path):
    out = tmp_path / "lora"
    args = flags("grpo", tiny_model_dir, prompts, out, "--reward", f"{REWARD},{letters_reward}", "--max-steps", "2",
                 "--lora", "--lora-r", "4", *SHAPE)
    assert main(args) == 0
    assert (out / "model" / "adapter_config.json").is_file()
    train = [r for r in records(out) if "loss" in r]
    assert train[0]["kl/ref_per_token"] == pytest.approx(0.0, abs=1e-6)  # the adapter starts as a no-op
    assert "reward/letters" in train[0]


@pytest.fixture(scope="module")
def reward_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rm")
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?", "chosen": f"#### {2 * i}",
                                         "rejected": "No idea."}) + "\n" for i in range(6)))
    out = tmp / "rm"
    assert main(["rm", "--model", str(tiny_model_dir), "--data", str(pairs), "--output-dir", str(out),
                 "--max-length", "64", "--batch-size", "2", "--max-steps", "2", "--lr", "1e-3", "--no-progress"]) == 0
    assert (out / "model" / "reward_stats.json").is_file()
    return out / "model"


def test_ppo_with_a_reward_model_as_reward_and_value_model(tiny_model_dir, prompts, reward_model, tmp_path,
                                                           monkeypatch):
    sampled = []  # (prompts, rollout) of each call: the first is round 0, sampled from the starting policy
    sample = online.sample

    def recording_sample(model, tokenizer, prompt_list, **kwargs):
        rollout = sample(model, tokenizer, prompt_list, **kwargs)
        sampled.append((list(prompt_list), rollout))
        return rollout

    out = tmp_path / "ppo_rm"
    args = flags("ppo", tiny_model_dir, prompts, out, "--reward", f"{reward_model},0.5*format_answer_line",
                 "--value-model", str(reward_model), "--max-steps", "2", "--eval-fraction", "0.25", "--eval-prompts",
                 "4", "--prompts-per-rollout", "4", "--batch-size", "2", "--update-epochs", "1")
    monkeypatch.setattr(online, "sample", recording_sample)
    assert main(args) == 0
    rows = [r for r in records(out) if "loss" in r]
    prompt_list, rollout = sampled[0]
    # the reward: the RM's scores of round 0's responses, normalized with its reward_stats.json
    scorer = RewardModel.load(reward_model)
    scores = scorer.score([prompt_list[i] for i in rollout.prompt_index], rollout.texts, normalize=True)
    assert rows[0]["reward/rm"] == pytest.approx(sum(scores) / len(scores), abs=1e-4)  # named after rm/model
    assert rows[0]["reward/score"] == pytest.approx(rows[0]["reward/mean"])
    # the critic starts as the reward model, its head rescaled to the normalized scale: V = (head(h_t) − mean) / std
    stats = json.loads((reward_model / "reward_stats.json").read_text())
    critic = AutoModelForSequenceClassification.from_pretrained(reward_model)
    values = []
    with torch.no_grad():
        for prompt_ids, response_ids in zip(rollout.prompt_ids, rollout.response_ids):
            ids = torch.cat([prompt_ids, response_ids]).cpu()[None]
            hidden = critic.model(input_ids=ids).last_hidden_state[0, len(prompt_ids) - 1:-1]
            values.append((critic.score(hidden)[:, 0] - stats["mean"]) / stats["std"])
    assert rows[0]["value/rollout_mean"] == pytest.approx(float(torch.cat(values).mean()), abs=1e-4)
    AutoModelForCausalLM.from_pretrained(out / "model")


def run_cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bridle.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_grpo_resumed_after_sigkill_reaches_the_same_weights_as_an_uninterrupted_run(tiny_model_dir, prompts,
                                                                                    letters_reward, tmp_path, capsys):
    # rounds of 2 prompts × 2 samples, 2 optimizer steps each: checkpoint at step 2 (a round boundary), killed at 3
    extra = ["--reward", f"{REWARD},{letters_reward}", "--max-steps", "4", "--save-every", "2",
             "--prompts-per-rollout", "2", "--num-samples", "2", "--batch-size", "1", "--grad-accum", "2",
             "--temperature", "0.9", "--top-k", "50", "--lr", "3e-3", "--eval-fraction", "0.25", "--eval-prompts", "4"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    killed = run_cli(flags("grpo", tiny_model_dir, prompts, broken, *extra), {"BRIDLE_FAULT_KILL_AT_STEP": "3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (broken / "model").exists()
    assert main(flags("grpo", tiny_model_dir, prompts, whole, *extra)) == 0
    check_outputs(whole, 4)  # (this is also the plain `bridle grpo` run of the end-to-end checks)
    assert main(flags("grpo", tiny_model_dir, prompts, broken, *extra, "--resume")) == 0
    assert "resumed from" in capsys.readouterr().err
    a = load_file(str(whole / "model" / "model.safetensors"))
    b = load_file(str(broken / "model" / "model.safetensors"))
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    assert a.keys() == b.keys() == start.keys()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-4  # the run did train
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
    whole_rows = [r for r in records(whole) if "loss" in r]
    broken_rows = [r for r in records(broken) if "loss" in r]
    assert [r["step"] for r in broken_rows] == [1, 2, 3, 4]  # the killed step 3 is logged once
    for x, y in zip(whole_rows[2:], broken_rows[2:]):  # round 1 sampled again from the restored policy
        assert x["reward/mean"] == y["reward/mean"] and x["loss"] == pytest.approx(y["loss"], abs=1e-6)


@pytest.mark.parametrize(("reward", "message"), [
    ("", "bridle grpo needs --reward"),
    ("math_exact_match,,format_answer_line", "has an empty entry"),
    ("0.5*no_such_reward", 'unknown reward "no_such_reward"'),
    ("no_such_module_xyz:fn", 'cannot load reward function "no_such_module_xyz:fn"'),
])
def test_reward_errors_exit_2_with_a_bridle_message(tiny_model_dir, prompts, tmp_path, capsys, reward, message):
    args = flags("grpo", tiny_model_dir, prompts, tmp_path / "err", "--max-steps", "1", *SHAPE)
    if reward:
        args += ["--reward", reward]
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    message_at = next(i for i, line in enumerate(lines) if line.startswith("bridle: "))
    assert message in lines[message_at] and "Traceback" not in err
    assert all(line.startswith("        ") for line in lines[message_at + 1:])  # continuation lines, indented
    assert not (tmp_path / "err" / "model").exists()


def test_grpo_monitors_log_length_drift_and_the_judges_win_rate_every_judged_round(tiny_model_dir, prompts,
                                                                                   letters_reward, tmp_path):
    out = tmp_path / "monitored"
    args = flags("grpo", tiny_model_dir, prompts, out, "--reward", f"{REWARD},{letters_reward}", "--max-steps", "3",
                 "--eval-fraction", "0.25", "--eval-prompts", "4", "--judge-every", "2",
                 "--judge", f"rule:{letters_reward}", *SHAPE)
    assert main(args) == 0
    train = [r for r in records(out) if "loss" in r]
    assert len(train) == 3 and all("monitor/length_ratio" in r and "monitor/warnings" in r for r in train)
    assert train[0]["monitor/length_ratio"] == 1.0  # round 0 is the baseline
    for row in train:
        assert row["monitor/length_ratio"] == pytest.approx(row["rollout/response_length"]
                                                            / train[0]["rollout/response_length"])
    # round 0 stores the initial answers, round 2 is judged against them, round 1 is not judged
    assert ["monitor/judge_win_rate" in r for r in train] == [False, False, True]
    assert 0.0 <= train[2]["monitor/judge_win_rate"] <= 1.0
    for row in train:  # only the length rule can fire: the reward trend needs more rounds than 3 (window 3)
        assert row["monitor/warnings"] == float(row["monitor/length_ratio"] > 2.0)


def test_grpo_monitor_warns_on_the_console_when_length_passes_the_bound(tiny_model_dir, prompts, letters_reward,
                                                                        tmp_path, capsys):
    # a bound below 1 is passed by every round, round 0 included: the warning path end to end
    out = tmp_path / "drift"
    args = flags("grpo", tiny_model_dir, prompts, out, "--reward", letters_reward, "--max-steps", "2",
                 "--length-drift-bound", "0.5", *SHAPE)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "possible reward hacking" in err and "--length-drift-bound 0.5" in err
    assert [r["monitor/warnings"] for r in records(out) if "loss" in r] == [1.0, 1.0]


def test_judge_every_without_a_judge_is_a_user_error(tiny_model_dir, prompts, letters_reward, tmp_path, capsys):
    args = flags("grpo", tiny_model_dir, prompts, tmp_path / "err", "--reward", letters_reward, "--max-steps", "1",
                 "--judge-every", "1", *SHAPE)
    assert main(args) == 2
    assert "--judge-every needs --judge" in capsys.readouterr().err


def test_stop_when_ends_an_online_run_between_rounds(tiny_model_dir, prompts, letters_reward, tmp_path):
    # Step 1's policy is the reference, so kl/ref is 0 there; it grows after the first update. A bound of 0 on it
    # stops the run at the first step whose round was sampled from an updated policy: step 2, not the 4 planned.
    out = tmp_path / "grpo"
    assert main(flags("grpo", tiny_model_dir, prompts, out, "--reward", letters_reward, "--max-steps", "4",
                      "--lr", "1e-2", "--stop-when", "kl>0")) == 0
    run = json.loads((out / "run.json").read_text())
    kls = [r["kl/ref_per_token"] for r in records(out) if "kl/ref_per_token" in r]  # GRPO's KL is per token
    assert kls[0] == 0 and kls[-1] > 0 and len(kls) == run["steps"] == 2
    assert run["planned_steps"] == 4 and run["stopped_by"].startswith("stop_when kl>0: kl/ref_per_token=")
