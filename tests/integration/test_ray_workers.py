"""`--rollout-workers` / `--reward-workers` on a one-machine Ray (`--ray-address local`, loopback only): the Ray
actors sample each shard with the seed the training process would use and score with the same reward sources, so
a GRPO run with them trains exactly as one without."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from online_runs import online_flags
from safetensors.torch import load_file

from bridle.errors import ConfigError
from bridle.rollout.ray_workers import check_ray


def test_workers_need_an_address_and_an_address_needs_workers():
    with pytest.raises(ConfigError, match="give --ray-address local"):
        check_ray("", 2, 0)
    with pytest.raises(ConfigError, match="without --rollout-workers or --reward-workers"):
        check_ray("local", 0, 0)
    with pytest.raises(ConfigError, match="must be >= 0"):
        check_ray("local", -1, 0)
    check_ray("", 0, 0)  # no Ray: nothing to check


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "bridle.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_grpo_with_ray_rollout_and_reward_workers_trains_as_without(tiny_model_dir, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'bridle[ray]'): the Ray workers are untested")
    flags = online_flags("grpo", tiny_model_dir, tmp_path, "--batch-size", "4", "--rollout-shards", "2", "--beta",
                         "0.1")
    here, ray = tmp_path / "here", tmp_path / "ray"
    done = run(flags + ["--output-dir", str(here)])
    assert done.returncode == 0, done.stderr[-3000:]
    done = run(flags + ["--output-dir", str(ray), "--ray-address", "local", "--rollout-workers", "2",
                        "--reward-workers", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = ([json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (here, ray))
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "grad_norm", "reward/mean", "reward/std", "rollout/response_length"):
            if key in ra:
                assert abs(ra[key] - rb[key]) <= 1e-5 * max(1.0, abs(ra[key])), (ra["step"], key, ra[key], rb[key])
    rewards = [r["reward/mean"] for r in b if "loss" in r]
    assert rewards[0] != rewards[2]  # round 2 sampled by the workers from the weights round 1 trained
    wa, wb = (load_file(str(d / "model" / "model.safetensors")) for d in (here, ray))
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-6)
