"""The pieces of a multi-process run that need no processes: the data split, the launch command, the strategy
checks. (Running 2 processes is tests/integration/test_distributed_cli.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bridle.cli.launch import launch_command, needs_launch
from bridle.config import TrainConfig
from bridle.engine.batches import BatchPlan
from bridle.engine.distributed import (
    check_sharded_config,
    check_strategy_took,
    cpu_fsdp_wanted,
    sharded_strategy,
)
from bridle.errors import ConfigError


@pytest.mark.parametrize("num_items", [13, 16, 3])
def test_processes_split_each_global_batch_with_no_duplicate_and_no_gap(num_items):
    one = BatchPlan(num_items, 4, seed=5)
    plans = [BatchPlan(num_items, 2, seed=5, process_index=r, num_processes=2) for r in range(2)]
    assert plans[0].per_epoch == one.per_epoch
    for m in range(2 * one.per_epoch):  # two epochs
        shares = [p.indices(m) for p in plans]
        assert sorted(shares[0] + shares[1]) == sorted(one.indices(m))  # the same global batch, split
        assert not set(shares[0]) & set(shares[1])
    seen = [i for m in range(one.per_epoch) for p in plans for i in p.indices(m)]
    assert sorted(seen) == list(range(num_items))  # an epoch: every item once


def test_num_processes_launches_torchrun_on_loopback_with_the_same_arguments():
    config = TrainConfig(num_processes=2)
    command = launch_command(config, ["sft", "--data", "d.jsonl", "--num-processes", "2"], port=29999)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert command[command.index("--nproc_per_node") + 1] == "2"
    assert command[command.index("--master_addr") + 1] == "127.0.0.1"
    assert command[-7:] == ["-m", "bridle.cli.main", "sft", "--data", "d.jsonl", "--num-processes", "2"]


def test_an_accelerate_config_launches_accelerate_and_a_missing_one_is_named(tmp_path):
    path = tmp_path / "fsdp.yaml"
    path.write_text("distributed_type: FSDP\n")
    command = launch_command(TrainConfig(num_processes=4, accelerate_config=str(path)), ["sft"], port=29999)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--config_file") + 1] == str(path)
    assert command[command.index("--num_processes") + 1] == "4"
    with pytest.raises(ConfigError, match="no such file.*configs/accelerate"):
        launch_command(TrainConfig(num_processes=2, accelerate_config=str(tmp_path / "nope.yaml")), ["sft"])


def test_a_launched_process_never_launches_again(monkeypatch):
    config = TrainConfig(num_processes=2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("BRIDLE_LAUNCHED", raising=False)
    assert needs_launch(config) and not needs_launch(TrainConfig())
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not needs_launch(config)


def test_sharding_asked_for_where_neither_accelerate_nor_the_engine_runs_it_is_refused(monkeypatch):
    cpu = SimpleNamespace(distributed_type=SimpleNamespace(value="MULTI_CPU"), num_processes=2)
    alone = SimpleNamespace(distributed_type=SimpleNamespace(value="NO"), num_processes=1)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    check_strategy_took(cpu)  # several CPU processes: the engine shards with torch's fully_shard
    assert cpu_fsdp_wanted(cpu) and not cpu_fsdp_wanted(alone)
    with pytest.raises(ConfigError, match="asks for FSDP, but accelerate runs it only on GPUs"):
        check_strategy_took(alone)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    check_strategy_took(cpu)
    assert not cpu_fsdp_wanted(cpu)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="asks for DeepSpeed, but accelerate runs it only on GPUs"):
        check_strategy_took(cpu)
    assert sharded_strategy(SimpleNamespace(distributed_type=SimpleNamespace(value="FSDP"))) == "FSDP"


def test_checkpoints_and_accumulation_are_refused_where_not_wired_for_sharded_models():
    with pytest.raises(ConfigError, match="--save-every / --resume under DeepSpeed"):
        check_sharded_config(TrainConfig(save_every=5), "DeepSpeed")
    with pytest.raises(ConfigError, match="--grad-accum under DeepSpeed"):
        check_sharded_config(TrainConfig(grad_accum=2), "DeepSpeed")
    check_sharded_config(TrainConfig(), "FSDP")
    check_sharded_config(TrainConfig(save_every=5, resume="auto", grad_accum=2), "FSDP")  # (sharded_state)


def test_a_run_not_launched_in_the_processes_it_asks_for_is_refused(monkeypatch):
    from bridle.engine.distributed import check_process_count

    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ConfigError, match="num_processes is 2, but this run has 1 process"):
        check_process_count(TrainConfig(num_processes=2))
    check_process_count(TrainConfig())
    monkeypatch.setenv("WORLD_SIZE", "8")  # `accelerate launch` of 8 without --num-processes: the launch decides
    check_process_count(TrainConfig())


def test_gradients_that_differ_across_processes_stop_the_run():
    import torch

    from bridle.engine.distributed import check_gradients_in_sync
    from bridle.errors import BridleError

    def accelerator(norms):
        return SimpleNamespace(num_processes=len(norms), device="cpu",
                               gather=lambda t: torch.tensor(norms, dtype=torch.float64))

    check_gradients_in_sync(accelerator([1.25, 1.25]), 1.25, "sft")  # synchronized: the same norm everywhere
    with pytest.raises(BridleError, match="bridle rm: the 2 processes' gradients differ.*1.40506, 2.28681"):
        check_gradients_in_sync(accelerator([1.40506, 2.28681]), 1.40506, "rm")
