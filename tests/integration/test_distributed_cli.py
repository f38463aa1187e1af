"""`bridle <method> --num-processes 2` on CPU (gloo): the same global batch in 2 processes trains as 1 process does,
each training item is seen once, only the main process writes, and a 2-process run killed mid-way resumes.

Every check runs in the default suite (10-30 s each on 2 cores): SFT, DPO, reward model, GRPO and PPO 2-vs-1, the
killed-and-resumed run, and FSDP on CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from online_runs import online_flags
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from bridle.cli.main import main

QA = [("What is 2 plus 2?", "2 plus 2 is 4."), ("Name a color.", "Blue is a color."),
      ("Say hello.", "Hello!"), ("What is the capital of France?", "Paris is the capital of France."),
      ("Count to three.", "One, two, three."), ("Spell cat.", "C, A, T.")]
FSDP = str(Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "fsdp.yaml")


def write_chats(path: Path, rows: int) -> Path:
    with open(path, "w") as handle:
        for i in range(rows):
            q, a = QA[i % len(QA)]
            messages = [{"role": "user", "content": f"{q} ({i})"}, {"role": "assistant", "content": a}]
            handle.write(json.dumps({"messages": messages}) + "\n")
    return path


def sft_flags(model_dir: Path, data: Path, out: Path) -> list[str]:
    return ["sft", "--model", str(model_dir), "--data", str(data), "--output-dir", str(out), "--max-length", "256",
            "--lr", "3e-3", "--seed", "3", "--log-every", "1", "--no-progress", "--no-packing",
            "--warmup-ratio", "0.25"]


def run_cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bridle.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_curves(one: Path, two: Path, keys: tuple[str, ...]) -> None:
    a, b = metrics(one), metrics(two)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in keys:
            assert abs(ra[key] - rb[key]) <= 1e-4 * max(1.0, abs(ra[key])), (ra["step"], key, ra[key], rb[key])


def assert_same_weights(one: Path, two: Path, atol: float = 1e-5) -> None:
    a, b = load_file(str(one / "model" / "model.safetensors")), load_file(str(two / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol)


def test_two_sft_processes_match_one_with_the_same_global_batch_and_see_each_item_once(tiny_model_dir, tmp_path):
    # 13 rows, global batch 4: the epoch's last batch has 1 row, so process 1 has no share of it (a stand-in of
    # weight 0 keeps its gradient all-reduce paired)
    data = write_chats(tmp_path / "chats.jsonl", rows=13)
    one, two, seen = tmp_path / "one", tmp_path / "two", tmp_path / "seen"
    seen.mkdir()
    assert main(sft_flags(tiny_model_dir, data, one) + ["--batch-size", "4"]) == 0
    done = run_cli(sft_flags(tiny_model_dir, data, two) + ["--batch-size", "2", "--num-processes", "2"],
                   {"BRIDLE_DEBUG_SEEN_ITEMS": str(seen)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_curves(one, two, ("loss", "grad_norm", "lr", "epoch"))
    assert len(metrics(two)) == 4  # 4 steps, logged once (by the main process), not once per process
    assert_same_weights(one, two)
    batches = {rank: [[int(i) for i in line.split()] for line in (seen / f"rank-{rank}.txt").read_text().splitlines()]
               for rank in (0, 1)}
    assert [len(b) for b in batches[0]] == [2, 2, 2, 1] and [len(b) for b in batches[1]] == [2, 2, 2]
    everything = [i for rank in (0, 1) for batch in batches[rank] for i in batch]
    assert sorted(everything) == list(range(13))  # no duplicate, no gap
    assert done.stderr.count("saved model to") == 1  # one process prints the run's notes
    assert json.loads((two / "run.json").read_text())["num_processes"] == 2


def test_two_process_run_killed_mid_way_resumes_to_the_weights_of_an_uninterrupted_run(tiny_model_dir, tmp_path):
    data = write_chats(tmp_path / "chats.jsonl", rows=16)
    flags = ["--max-steps", "6", "--save-every", "2", "--grad-accum", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(sft_flags(tiny_model_dir, data, one) + flags + ["--batch-size", "4"]) == 0
    two_flags = sft_flags(tiny_model_dir, data, two) + flags + ["--batch-size", "2", "--num-processes", "2"]
    killed = run_cli(two_flags, {"BRIDLE_FAULT_KILL_AT_STEP": "3"})
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr + killed.stdout
    assert not (two / "model").exists() and (two / "checkpoints" / "step-0000002").is_dir()
    refused = run_cli(sft_flags(tiny_model_dir, data, two) + flags + ["--batch-size", "2", "--resume"])
    assert refused.returncode == 2 and "written by a run of 2 processes" in refused.stderr, refused.stderr[-2000:]
    resumed = run_cli(two_flags + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step-0000002" in resumed.stderr
    assert_same_weights(one, two)
    steps = [r["step"] for r in metrics(two)]
    assert steps == [1, 2, 3, 4, 5, 6]  # the killed step 3 logged once, by the main process


def test_two_grpo_processes_sample_their_shards_and_train_as_one_process(tiny_model_dir, tmp_path):
    # a round: 4 prompts × 2 samples in 2 shards of 2 prompts; 2 optimizer steps per round, 2 rounds. One process
    # samples both shards (--rollout-shards 2); two processes sample one each, exchange the round's experience and
    # train on half of every global batch.
    flags = online_flags("grpo", tiny_model_dir, tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(flags + ["--output-dir", str(one), "--batch-size", "4", "--rollout-shards", "2"]) == 0
    done = run_cli(flags + ["--output-dir", str(two), "--batch-size", "2", "--num-processes", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_curves(one, two, ("loss", "grad_norm", "reward/mean", "reward/std", "rollout/response_length",
                                  "kl/ref_per_token"))
    rewards = [r["reward/mean"] for r in metrics(two) if "loss" in r]
    assert rewards[0] != rewards[2]  # two rounds, sampled from the policy as it trains
    assert_same_weights(one, two)


def test_grpo_under_fsdp_samples_from_an_unsharded_copy_and_trains_as_one_process(tiny_model_dir, tmp_path):
    # each round the sharded policy's weights are gathered into each process's unsharded copy, which samples,
    # scores, takes the π_old / reference log-probs and evaluates; the step runs sharded. 2 rounds: the second one
    # samples from the weights the first one's updates made
    flags = online_flags("grpo", tiny_model_dir, tmp_path, "--beta", "0.1", "--update-epochs", "1")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(flags + ["--output-dir", str(one), "--batch-size", "4", "--rollout-shards", "2"]) == 0
    done = run_cli(flags + ["--output-dir", str(two), "--batch-size", "2", "--num-processes", "2",
                            "--accelerate-config", FSDP])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parameters are DTensors: True" in done.stderr + done.stdout
    assert_same_curves(one, two, ("loss", "grad_norm", "reward/mean", "reward/std", "rollout/response_length",
                                  "kl/ref_per_token"))
    rewards = [r["reward/mean"] for r in metrics(two) if "loss" in r]
    assert rewards[0] != rewards[2]  # two rounds, the second sampled from the updated weights
    assert_same_weights(one, two)


def test_two_dpo_processes_train_as_one_process(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BRIDLE_CACHE", str(tmp_path / "cache"))
    data = write_pairs(tmp_path / "pairs.jsonl")
    flags = ["dpo", "--model", str(tiny_model_dir), "--data", str(data), "--max-length", "128", "--lr", "1e-3",
             "--max-steps", "3", "--log-every", "1", "--no-progress", "--seed", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(flags + ["--output-dir", str(one), "--batch-size", "4"]) == 0
    done = run_cli(flags + ["--output-dir", str(two), "--batch-size", "2", "--num-processes", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_curves(one, two, ("loss", "grad_norm", "reward/margin", "reward/accuracy"))
    assert_same_weights(one, two)


def write_pairs(path: Path) -> Path:
    chat = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    rows = [{"prompt": chat("user", f"{q} ({i})"), "chosen": chat("assistant", a), "rejected": chat("assistant", "No.")}
            for i, (q, a) in enumerate(QA * 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_two_reward_model_processes_train_as_one_process(tiny_model_dir, tmp_path):
    # the reward model's step reads the body and the score head itself (no model forward): the step unit puts it
    # inside the DDP wrapper's forward, so its gradients are all-reduced. Prefix-shared batches (the default) and
    # padded ones, so both scoring paths run under DDP.
    data = write_pairs(tmp_path / "pairs.jsonl")
    flags = ["rm", "--model", str(tiny_model_dir), "--data", str(data), "--max-length", "128", "--lr", "3e-3",
             "--max-steps", "3", "--log-every", "1", "--no-progress", "--seed", "1", "--eval-fraction", "0"]
    for layout in ([], ["--no-prefix-sharing"]):
        one, two = tmp_path / f"one{len(layout)}", tmp_path / f"two{len(layout)}"
        assert main(flags + layout + ["--output-dir", str(one), "--batch-size", "4"]) == 0
        done = run_cli(flags + layout + ["--output-dir", str(two), "--batch-size", "2", "--num-processes", "2"])
        assert done.returncode == 0, done.stderr[-3000:]
        assert_same_curves(one, two, ("loss", "grad_norm", "reward/margin", "reward/accuracy"))
        # (AdamW at lr 3e-3 turns the rounding of a near-zero gradient, summed in another order, into a step of up
        # to lr: one of 8,192 embedding values measured 1.9e-4 apart, the rest within 1e-5)
        assert_same_weights(one, two, atol=1e-3)
        stats = [json.loads((d / "model" / "reward_stats.json").read_text()) for d in (one, two)]
        assert stats[0]["count"] == stats[1]["count"] == 24  # scored once, by the main process, over every pair
        assert abs(stats[0]["mean"] - stats[1]["mean"]) < 1e-3 and abs(stats[0]["std"] - stats[1]["std"]) < 1e-3


def test_two_ppo_processes_with_adaptive_kl_train_as_one_process(tiny_model_dir, tmp_path):
    # a separate critic (the policy and value model are attributes the step reaches into), 2 updates a round (so
    # π_old is frozen), whitened advantages and an adaptive β: each process samples one shard, the round's
    # experience is exchanged, and whitening and the KL controller see all of it, as one process does
    flags = online_flags("ppo", tiny_model_dir, tmp_path, "--beta", "0.5", "--kl-target", "0.01", "--kl-horizon",
                         "8", "--update-epochs", "1", "--critic", "separate")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(flags + ["--output-dir", str(one), "--batch-size", "4", "--rollout-shards", "2"]) == 0
    done = run_cli(flags + ["--output-dir", str(two), "--batch-size", "2", "--num-processes", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    keys = ("loss", "loss/policy", "loss/value", "grad_norm", "reward/mean", "kl/ref", "kl/coef")
    assert_same_curves(one, two, keys)
    coefs = [r["kl/coef"] for r in metrics(two) if "kl/coef" in r]
    assert coefs[0] != coefs[-1]  # the controller moved β between rounds, the same way in both runs
    assert_same_weights(one, two)


def test_fsdp_on_two_cpu_processes_shards_the_model_and_trains_as_one_process(tiny_model_dir, tmp_path):
    # torch's FSDP2 (fully_shard) over gloo, applied by the engine (accelerate enables FSDP only on GPUs): the
    # parameters are DTensor shards, half on each process; grad accumulation 2, clipping on; the final weights are
    # gathered to the main process and saved
    data = write_chats(tmp_path / "chats.jsonl", rows=16)
    flags = ["--max-steps", "3", "--grad-accum", "2", "--max-grad-norm", "1.0"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(sft_flags(tiny_model_dir, data, one) + flags + ["--batch-size", "4"]) == 0
    done = run_cli(sft_flags(tiny_model_dir, data, two) + flags + ["--batch-size", "2", "--num-processes", "2",
                                                                   "--accelerate-config", FSDP])
    assert done.returncode == 0, done.stderr[-3000:]
    note = re.search(r"FSDP on CPU \(torch fully_shard over gloo, (\d+) units, parameters are DTensors: (\w+)\): "
                     r"processes hold (\d+) \+ (\d+) of (\d+) ", done.stderr + done.stdout)
    assert note, (done.stderr + done.stdout)[-3000:]
    units, dtensors = int(note.group(1)), note.group(2)
    first, second, total = int(note.group(3)), int(note.group(4)), int(note.group(5))
    layers = json.loads((tiny_model_dir / "config.json").read_text())["num_hidden_layers"]
    assert units == layers + 1  # each decoder layer, then the root (embeddings, norm, head)
    assert dtensors == "True" and first + second == total and abs(first - second) <= 0.05 * total
    assert_same_curves(one, two, ("loss", "grad_norm", "lr"))
    assert len(metrics(two)) == 3
    assert_same_weights(one, two)
    reloaded = AutoModelForCausalLM.from_pretrained(two / "model")
    saved = load_file(str(two / "model" / "model.safetensors"))
    for name, value in reloaded.state_dict().items():
        if name in saved:
            torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    assert done.stderr.count("saved model to") == 1


def test_fsdp_run_killed_mid_way_resumes_to_the_weights_of_an_uninterrupted_run(tiny_model_dir, tmp_path):
    # the checkpoint of a sharded run: each process's shards of the weights and AdamW moments gathered whole to the
    # main process and written as usual; on resume each process takes its shards back from it
    data = write_chats(tmp_path / "chats.jsonl", rows=16)
    flags = ["--max-steps", "6", "--save-every", "2", "--grad-accum", "2", "--max-grad-norm", "1.0"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(sft_flags(tiny_model_dir, data, one) + flags + ["--batch-size", "4"]) == 0
    two_flags = sft_flags(tiny_model_dir, data, two) + flags + ["--batch-size", "2", "--num-processes", "2",
                                                                "--accelerate-config", FSDP]
    killed = run_cli(two_flags, {"BRIDLE_FAULT_KILL_AT_STEP": "3"})
    assert killed.returncode != 0
    checkpoint = two / "checkpoints" / "step-0000002"
    assert not (two / "model").exists() and checkpoint.is_dir()
    saved = load_file(str(checkpoint / "model.safetensors"))  # whole tensors under their plain names
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert {k: v.shape for k, v in saved.items()} == {k: reference[k].shape for k in saved}
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["optimizer_keys"] == "names" and state["sharded"] == "FSDP"
    unsharded = run_cli(sft_flags(tiny_model_dir, data, two) + flags + ["--batch-size", "2", "--num-processes", "2",
                                                                        "--resume"])
    assert unsharded.returncode != 0 and "written by an FSDP run; this one is unsharded" in unsharded.stderr, \
        unsharded.stderr[-2000:]  # refused before anything loads: the checkpoint is still there to resume
    resumed = run_cli(two_flags + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step-0000002" in resumed.stderr
    assert_same_curves(one, two, ("loss", "grad_norm", "lr"))
    assert_same_weights(one, two)


def write_unpaired(path: Path) -> Path:
    rows = [{"prompt": f"{q} ({i})", "completion": text, "label": good}
            for i, (q, a) in enumerate(QA * 2) for text, good in ((a, True), ("No.", False))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_two_kto_processes_take_the_kl_estimate_over_the_global_batch_and_train_as_one(tiny_model_dir, tmp_path,
                                                                                        monkeypatch):
    # KTO's reference point z0 is a batch statistic (the mean KL of mismatched pairs): each process holds half the
    # batch, so it is all-reduced inside the step; taken over a process's half it would differ from one process's
    monkeypatch.setenv("BRIDLE_CACHE", str(tmp_path / "cache"))
    data = write_unpaired(tmp_path / "unpaired.jsonl")
    flags = ["kto", "--model", str(tiny_model_dir), "--data", str(data), "--max-length", "128", "--lr", "1e-3",
             "--max-steps", "3", "--log-every", "1", "--no-progress", "--seed", "1", "--eval-fraction", "0"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(flags + ["--output-dir", str(one), "--batch-size", "4"]) == 0
    done = run_cli(flags + ["--output-dir", str(two), "--batch-size", "2", "--num-processes", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    # (not reward/chosen and the like: means over the desirable rows of each micro-batch, then over micro-batches,
    # they depend on how the batch is cut, as with --grad-accum in one process)
    assert_same_curves(one, two, ("loss", "grad_norm", "kl"))
    assert_same_weights(one, two)


PAIRED = ("orpo", "simpo", "rrhf")


@pytest.mark.slow  # ~10-30 s each: the default suite keeps one check per kind of step
@pytest.mark.parametrize("command,strategy", [(m, "ddp") for m in (*PAIRED, "rloo", "raft")]
                         + [(m, "fsdp") for m in ("dpo", "rm", "kto", "ppo")])
def test_every_other_method_trains_on_two_processes_as_on_one(command, strategy, tiny_model_dir, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("BRIDLE_CACHE", str(tmp_path / "cache"))
    if command in ("rloo", "raft", "ppo"):
        steps = "4" if command != "raft" else "2"
        flags = online_flags(command, tiny_model_dir, tmp_path, "--lr", "1e-3", "--update-epochs", "1",
                             "--max-steps", steps)
        one_batch = ["--batch-size", "4", "--rollout-shards", "2"]  # the shards two processes sample
    else:
        data = (write_unpaired(tmp_path / "d.jsonl") if command == "kto" else write_pairs(tmp_path / "d.jsonl"))
        if command == "rrhf":  # ranked responses: the pair as two of them, with scores
            rows = [json.loads(line) for line in data.read_text().splitlines()]
            data.write_text("".join(json.dumps({"prompt": r["prompt"], "responses": [r["chosen"], r["rejected"]],
                                                "scores": [1, 0]}) + "\n" for r in rows))
        flags = [command, "--model", str(tiny_model_dir), "--data", str(data), "--lr", "1e-3", "--log-every", "1",
                 "--no-progress", "--seed", "1", "--max-length", "128", "--max-steps", "3", "--eval-fraction", "0"]
        one_batch = ["--batch-size", "4"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(flags + ["--output-dir", str(one), *one_batch]) == 0
    launch = ["--batch-size", "2", "--num-processes", "2"]
    if strategy == "fsdp":
        launch += ["--accelerate-config", FSDP]
    done = run_cli(flags + ["--output-dir", str(two), *launch])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_curves(one, two, ("loss", "grad_norm"))
    assert_same_weights(one, two, atol=1e-3 if command == "rm" else 1e-5)
