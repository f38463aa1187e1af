"""A run directory belongs to one run: the config fingerprint, checkpoints pruned and resumed by step within one run,
the lock, --overwrite, and the leftovers of killed runs."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bridle.config import TrainConfig
from bridle.engine.checkpoint import STATE_FILE, list_checkpoints, save_checkpoint, trainable_state
from bridle.engine.rundir import (
    LOCK_FILE,
    NEUTRAL_KEYS,
    PLOT_FILES,
    RunLock,
    check_run_dir,
    claim_run_dir,
    clean_leftovers,
    math_config,
    resumable_checkpoint,
    run_fingerprint,
)
from bridle.errors import BridleError


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_checkpoint(directory: Path, name: str, config: TrainConfig, method: str = "sft") -> Path:
    """A checkpoint directory as `list_checkpoints` sees one: its trainer state, with the run's fingerprint."""
    path = directory / name
    path.mkdir(parents=True)
    state = {"step": int(name.split("-")[1]), "fingerprint": run_fingerprint(config, method),
             "config": math_config(config, method)}
    (path / STATE_FILE).write_text(json.dumps(state))
    return path


def write(directory: Path, config: TrainConfig, step: int, keep: int, method: str = "sft") -> Path:
    """Write a real checkpoint of a tiny model, as the engine does (its state carries the run's fingerprint)."""
    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    state = {"fingerprint": run_fingerprint(config, method), "config": math_config(config, method)}
    return save_checkpoint(directory, step=step, weights=trainable_state(model),
                           optimizer_state=optimizer.state_dict(), scheduler=scheduler, state=state, keep=keep)


# -- fingerprint ----------------------------------------------------------------------------------------------------
def test_fingerprint_ignores_the_keys_that_do_not_change_the_math_and_no_other():
    base = TrainConfig(data="d.jsonl")
    neutral = {"output_dir": "elsewhere", "resume": "yes", "overwrite": True, "progress": False, "log_every": 3,
               "eval_every": 5, "save_every": 7, "keep_checkpoints": 9, "report_to": "tensorboard",
               "eval_on_start": True, "max_nonfinite_steps": 11, "num_processes": 2,
               "accelerate_config": "configs/accelerate/fsdp.yaml"}
    online = {"ray_address": "local", "rollout_workers": 2, "reward_workers": 1}  # keys of the online methods
    assert set(neutral) | set(online) == NEUTRAL_KEYS
    assert run_fingerprint(dataclasses.replace(base, **neutral), "sft") == run_fingerprint(base, "sft")
    from bridle.methods.online import OnlineConfig

    rounds = OnlineConfig(data="d.jsonl", reward="math_exact_match")
    assert run_fingerprint(dataclasses.replace(rounds, **online), "grpo") == run_fingerprint(rounds, "grpo")
    for key in ("lr", "seed", "max_steps", "model", "data", "batch_size", "grad_accum", "lr_schedule"):
        value = getattr(base, key)
        changed = value + "x" if isinstance(value, str) else value + 1
        assert run_fingerprint(dataclasses.replace(base, **{key: changed}), "sft") != run_fingerprint(base, "sft"), key
    assert run_fingerprint(base, "dpo") != run_fingerprint(base, "sft")


# -- checkpoints: pruned and resumed by step, within one run --------------------------------------------------------
def test_pruning_keeps_the_newest_checkpoints_by_step_number_not_by_name(tmp_path):
    config = TrainConfig(lr=1e-3)
    for name in ("step-2", "step-4", "step-10"):  # names whose order is not their steps' (as older files had)
        fake_checkpoint(tmp_path, name, config)
    written = write(tmp_path, config, step=12, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-10", written.name] == ["step-10", "step-0000012"]


def test_list_checkpoints_orders_by_step_number(tmp_path):
    config = TrainConfig()
    for name in ("step-10", "step-9", "step-0000011", "step-100"):
        fake_checkpoint(tmp_path, name, config)
    (tmp_path / "step-0000200.tmp").mkdir()  # a killed write: never a checkpoint
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-9", "step-10", "step-0000011", "step-100"]


def test_another_runs_later_checkpoints_neither_prune_this_runs_nor_win_the_resume(tmp_path):
    # run A (12 steps) left step 8 and 10; run B writes step 2 then 4 into the same checkpoints dir
    a, b = TrainConfig(lr=3e-3, max_steps=12), TrainConfig(lr=1e-3, max_steps=6)
    fake_checkpoint(tmp_path, "step-0000008", a)
    fake_checkpoint(tmp_path, "step-0000010", a)
    write(tmp_path, b, step=2, keep=2)
    assert (tmp_path / "step-0000002").is_dir()  # the checkpoint just written survives its own pruning
    write(tmp_path, b, step=4, keep=2)
    write(tmp_path, b, step=6, keep=2)
    fingerprint = run_fingerprint(b, "sft")
    assert [p.name for p in list_checkpoints(tmp_path, fingerprint=fingerprint)] == ["step-0000004", "step-0000006"]
    assert (tmp_path / "step-0000010").is_dir()  # another run's files are not this run's to delete
    assert resumable_checkpoint(tmp_path, b, "sft", required=True).name == "step-0000006"
    assert resumable_checkpoint(tmp_path, a, "sft", required=True).name == "step-0000010"


def test_resume_refuses_another_runs_checkpoint_naming_the_keys_that_differ(tmp_path):
    fake_checkpoint(tmp_path, "step-0000010", TrainConfig(lr=3e-3, max_steps=12))
    with pytest.raises(BridleError, match=r"belong to another run, e\.g\. step-0000010; it differs from this run in: "
                                          r"max_steps 12 → 6, lr 0\.003 → 0\.001"):
        resumable_checkpoint(tmp_path, TrainConfig(lr=1e-3, max_steps=6), "sft", required=False)
    legacy = tmp_path / "step-0000011"
    legacy.mkdir()
    (legacy / STATE_FILE).write_text(json.dumps({"step": 11}))  # written before checkpoints had a fingerprint
    with pytest.raises(BridleError, match="step-0000011 .*an older Bridle"):
        resumable_checkpoint(tmp_path, TrainConfig(lr=1e-3, max_steps=6), "sft", required=False)


def test_resume_yes_without_a_checkpoint_is_an_error_and_auto_is_not(tmp_path):
    with pytest.raises(BridleError, match="no checkpoint to resume from"):
        resumable_checkpoint(tmp_path / "checkpoints", TrainConfig(), "sft", required=True)
    assert resumable_checkpoint(tmp_path / "checkpoints", TrainConfig(), "sft", required=False) is None


# -- the lock -------------------------------------------------------------------------------------------------------
def plant_lock(directory: Path, pid: int, host: str | None = None, **extra: object) -> dict:
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2024-05-01T10:00:00", **extra}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOCK_FILE).write_text(json.dumps(owner))
    return owner


def test_a_lock_of_a_live_process_is_refused_naming_it(tmp_path):
    plant_lock(tmp_path, os.getpid())
    with pytest.raises(BridleError, match=rf"in use by another run \(pid {os.getpid()} on {socket.gethostname()}, "
                                          r"started 2024-05-01 10:00:00\)"):
        RunLock.acquire(tmp_path, break_foreign=True)  # --overwrite does not take a live run's directory
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    gone = dead_pid()
    plant_lock(tmp_path, gone)
    notes: list[str] = []
    lock = RunLock.acquire(tmp_path, note=notes.append)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and f"took over the lock: the run that held it is gone (pid {gone}" in notes[0]
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="process start times are read from /proc")
def test_a_lock_whose_pid_now_names_another_process_is_stale(tmp_path):
    plant_lock(tmp_path, os.getpid(), pid_start="1")  # our pid, but a process that started at another time
    RunLock.acquire(tmp_path, note=lambda _: None).release()


def test_a_lock_of_another_host_is_refused_unless_overwrite_breaks_it(tmp_path):
    plant_lock(tmp_path, 1234, host="elsewhere")
    with pytest.raises(BridleError, match="(?s)locked by a run on another host .*pass --overwrite to break the lock"):
        RunLock.acquire(tmp_path)
    notes: list[str] = []
    RunLock.acquire(tmp_path, break_foreign=True, note=notes.append).release()
    assert "broken with --overwrite (pid 1234 on elsewhere" in notes[0]


def _take_over_slowly(directory: str, ready: Any, done: Any) -> None:
    """Hold the takeover guard while replacing the stale lock with this process's own, slowly."""
    from bridle.engine.rundir import _takeover_guard

    with _takeover_guard(Path(directory)):
        ready.set()
        time.sleep(1.0)
        plant_lock(Path(directory), os.getpid())
    done.wait(30)  # alive (so its lock is not stale) until the test is done


def test_taking_over_a_stale_lock_waits_for_a_takeover_in_progress_and_never_removes_its_lock(tmp_path):
    # run 2 is replacing the dead pid's lock with its own; run 1, finding the stale lock meanwhile, waits for it,
    # then sees run 2's live lock and is refused, leaving it in place (without the guard it removed it: two owners)
    plant_lock(tmp_path, dead_pid())
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    other = context.Process(target=_take_over_slowly, args=(str(tmp_path), ready, done))
    other.start()
    try:
        assert ready.wait(30)
        with pytest.raises(BridleError, match="is in use by another run"):
            RunLock.acquire(tmp_path, note=lambda _: None)
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == other.pid
    finally:
        done.set()
        other.join(30)


def _race(directory: str, results: multiprocessing.Queue, start: float) -> None:
    time.sleep(max(0.0, start - time.time()))
    try:
        lock = RunLock.acquire(Path(directory), note=lambda _: None)
    except BridleError:
        results.put("refused")
        return
    results.put("locked")
    time.sleep(3.0)  # hold it while the others try
    lock.release()


def test_of_runs_starting_at_once_exactly_one_gets_the_lock(tmp_path):
    plant_lock(tmp_path, dead_pid())  # and they all find a stale lock to take over
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 1.0
    procs = [context.Process(target=_race, args=(str(tmp_path), results, start)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["locked"] + ["refused"] * 5
    assert not (tmp_path / LOCK_FILE).exists()


# -- what a directory holds -----------------------------------------------------------------------------------------
def finished_run(directory: Path, config: TrainConfig) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    info = {"method": "sft", "config_fingerprint": run_fingerprint(config, "sft"), "started": "2024-05-01T10:00:00",
            "finished": "2024-05-01T11:00:00"}
    (directory / "run.json").write_text(json.dumps(info))
    (directory / "model").mkdir()
    (directory / "metrics.jsonl").write_text("")


def test_a_directory_holding_a_finished_run_is_refused_unless_overwrite(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path))
    finished_run(tmp_path, config)
    with pytest.raises(BridleError, match="(?s)holds a finished run of this config .*Pass --overwrite to run it again"):
        check_run_dir(tmp_path, config, "sft")
    other = dataclasses.replace(config, lr=1.0)
    with pytest.raises(BridleError, match=r"holds another run \(sft, started 2024-05-01 10:00:00, finished .*\)\. "
                                          r"Pass --overwrite to clear it, or another --output-dir\."):
        check_run_dir(tmp_path, other, "sft")
    (tmp_path / "reward.png").write_bytes(b"")
    (tmp_path / "model.tmp-999999999").mkdir()
    check_run_dir(tmp_path, dataclasses.replace(other, overwrite=True), "sft", note=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_an_unfinished_run_of_this_config_is_continued_only_when_asked(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path), lr=1e-3)
    finished_run(tmp_path, config)
    info = json.loads((tmp_path / "run.json").read_text())
    del info["finished"]  # it was killed (or stopped) before its first checkpoint
    (tmp_path / "run.json").write_text(json.dumps(info))
    with pytest.raises(BridleError, match="with no checkpoint to resume from.\nPass --overwrite \\(or --resume auto"):
        check_run_dir(tmp_path, config, "sft")
    with pytest.raises(BridleError, match="no checkpoint to resume from"):
        check_run_dir(tmp_path, dataclasses.replace(config, resume="yes"), "sft")
    notes: list[str] = []
    check_run_dir(tmp_path, dataclasses.replace(config, resume="auto"), "sft", note=notes.append)
    assert "has no checkpoint of this run; starting it fresh" in notes[0]
    write(tmp_path / "checkpoints", config, step=2, keep=2)
    with pytest.raises(BridleError, match="its newest checkpoint: step-0000002\\).\nPass --resume to continue it"):
        check_run_dir(tmp_path, config, "sft")
    for mode in ("yes", "auto"):
        check_run_dir(tmp_path, dataclasses.replace(config, resume=mode, log_every=1, save_every=5), "sft")


def test_overwrite_refuses_to_clear_files_bridle_did_not_write_and_names_them(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path), overwrite=True)
    finished_run(tmp_path, config)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best").mkdir()
    with pytest.raises(BridleError, match="files Bridle did not write: checkpoints/best, notes.txt"):
        check_run_dir(tmp_path, config, "sft")
    assert (tmp_path / "run.json").is_file() and (tmp_path / "notes.txt").is_file()


def test_plot_files_are_the_curves_bridle_draws():
    from bridle.eval.plots import CURVES

    assert set(PLOT_FILES) == set(CURVES)


def test_claim_releases_the_lock_when_the_run_fails_and_removes_a_dir_it_refused_into(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path / "run"))
    with pytest.raises(RuntimeError), claim_run_dir(config, "sft"):
        assert (tmp_path / "run" / LOCK_FILE).is_file()
        raise RuntimeError("the run failed")
    assert list((tmp_path / "run").iterdir()) == []
    with pytest.raises(BridleError, match="does not exist, so there is no run to resume"):
        with claim_run_dir(dataclasses.replace(config, output_dir=str(tmp_path / "new"), resume="yes"), "sft"):
            pass
    assert not (tmp_path / "new").exists()


# -- leftovers ------------------------------------------------------------------------------------------------------
def test_leftovers_of_killed_runs_go_and_those_of_live_processes_stay(tmp_path):
    gone, live = dead_pid(), os.getpid()
    (tmp_path / f"model.tmp-{gone}").mkdir()
    (tmp_path / f"model.tmp-{gone}" / "config.json").write_text("{}")
    (tmp_path / f"run.json.tmp-{gone}").write_bytes(b"")  # 0-byte temp file of an atomic write
    (tmp_path / f"model.tmp-{live}").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-0000004.tmp").mkdir()  # a checkpoint write the kill cut short
    (tmp_path / "checkpoints" / f"x.tmp-{gone}").write_bytes(b"")
    (tmp_path / "notes.tmp").write_text("not ours")
    notes: list[str] = []
    removed = clean_leftovers(tmp_path, notes.append)
    assert sorted(removed) == sorted([f"model.tmp-{gone}", f"run.json.tmp-{gone}", "checkpoints/step-0000004.tmp",
                                      f"checkpoints/x.tmp-{gone}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["checkpoints", f"model.tmp-{live}", "notes.tmp"])
    assert list((tmp_path / "checkpoints").iterdir()) == [] and len(notes) == 1
