"""A run directory belongs to one run. `claim_run_dir` is called before anything loads: it takes the directory's
lock, checks that what the directory holds is this run's (or clears it, with --overwrite), that --resume has a
checkpoint of this very config to continue, and removes what killed runs left behind. docs/runs.md has the rules.

A run is named by its config fingerprint: sha256 over the method and every config key that changes the math, that
is every key but NEUTRAL_KEYS. It goes into run.json and into every checkpoint, so a checkpoint of another config
is never resumed and never counted when pruning."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridle.config import to_dict
from bridle.engine.checkpoint import STATE_FILE, list_checkpoints
from bridle.engine.logging import console
from bridle.errors import BridleError, ConfigError

NEUTRAL_KEYS = frozenset({
    "output_dir", "resume", "overwrite",  # where the run goes and how it starts
    "progress", "log_every", "report_to",  # what is shown and logged
    "eval_every", "eval_on_start",  # evaluation runs without gradients and on a forked RNG
    "save_every", "keep_checkpoints",  # checkpoints read the state, they do not change it
    "max_nonfinite_steps",  # when to give up on a diverging run; the steps taken are the same
    "num_processes", "accelerate_config",  # how it is launched; checkpoints record the processes and resume checks
    "ray_address", "rollout_workers", "reward_workers",  # where online rounds sample and score: the same draws
})
"""Config keys that do not change what a run computes: a resumed run may change them, and the fingerprint leaves
them out. Every other key (and the method) changes the math and must match to resume."""

LOCK_FILE = "bridle.lock"
RUN_FILES = ("run.json", "config.yaml", "metrics.jsonl", "checkpoints", "model")
PLOT_FILES = ("reward.png", "kl.png", "entropy.png", "loss.png")  # bridle.eval.plots.CURVES (a test keeps them equal)
TRACKER_DIRS = ("bridle",)  # --report-to tensorboard writes <output dir>/<run name>, and the run name is "bridle"
LEFTOVER = re.compile(r"^.+\.(?:tmp|old|stale)-(\d+)$")  # atomic writes' temp files and dirs, named by their pid
CHECKPOINT_NAME = re.compile(r"^step-\d+(?:\.tmp)?$")


# -- notes and the fingerprint --------------------------------------------------------------------------------------
def say(text: str) -> None:
    """A note on the console, one line however long (paths are copied from it), never read as markup."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def math_config(config: Any, method: str) -> dict[str, Any]:
    """The method and the config keys that change the math (JSON-ready), as the fingerprint covers them."""
    values = json.loads(json.dumps(to_dict(config), default=str))
    return {"method": method, **{k: v for k, v in values.items() if k not in NEUTRAL_KEYS}}


def stored_math_config(stored: dict[str, Any]) -> dict[str, Any]:
    """`math_config` of a config as written to config.yaml ({"method": ..., key: value, ...})."""
    return {k: v for k, v in stored.items() if k not in NEUTRAL_KEYS}


def fingerprint_of(math: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(math, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(config: Any, method: str) -> str:
    """16 hex digits naming the run: sha256 over `math_config(config, method)`."""
    return fingerprint_of(math_config(config, method))


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ, as "key old → new" (a key one side lacks shows as "(none)")."""
    changes = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key in NEUTRAL_KEYS:
            continue
        a, b = old.get(key, "(none)"), new.get(key, "(none)")
        if a != b:
            changes.append(f"{key} {a} → {b}")
    return changes


# -- checkpoints of one run -----------------------------------------------------------------------------------------
def checkpoint_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def resumable_checkpoint(directory: Path, config: Any, method: str, *, required: bool) -> Path | None:
    """The newest checkpoint of this run (same fingerprint) under `directory`, by step. A checkpoint of another
    config is never picked: when only such checkpoints are there, a BridleError names the keys that differ.
    `required` (--resume yes): no checkpoint at all is an error too."""
    mine = math_config(config, method)
    fingerprint = fingerprint_of(mine)
    ours = list_checkpoints(directory, fingerprint=fingerprint)
    if ours:
        return ours[-1]
    others = list_checkpoints(directory)
    if others:
        newest = others[-1]
        state = checkpoint_state(newest)
        if "config" in state:
            differs = "; it differs from this run in: " + ", ".join(config_changes(state["config"], mine) or
                                                                    ["(keys unknown)"])
        elif "fingerprint" in state:
            differs = " (its config is not recorded)"
        else:
            differs = " (it records no config fingerprint: an older Bridle wrote it)"
        raise BridleError(f"--resume: the checkpoints in {directory} belong to another run, e.g. {newest.name}"
                          f"{differs}.\nResume with that run's values, pass --overwrite to clear it, or pass another "
                          "--output-dir.")
    if required:
        raise BridleError(f"--resume: {directory.parent} has no checkpoint to resume from (a run writes them with "
                          "--save-every N).\nDrop --resume to start a new run there, or pass --resume auto to resume "
                          "when there is a checkpoint and start fresh when there is none.")
    return None


# -- processes and the lock -----------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, ...]; index 19 is the start time (Linux only)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def process_alive(pid: int, start: str | None = None, boot_id: str | None = None) -> bool:
    """Whether process `pid` of this host still runs. With `start` (its start time, as the lock records it) and
    `boot_id`, a pid reused by another process since, or a machine rebooted since, reads as not running."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if boot_id and _boot_id() and boot_id != _boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except (OverflowError, OSError):
        return False
    stat = _proc_stat(pid)
    if stat:
        if stat[0] == "Z":  # ended, not yet reaped by its parent
            return False
        if start and len(stat) > 19 and stat[19] != start:
            return False
    return True


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _shown(when: Any) -> str:
    return str(when).replace("T", " ") if when else "at an unknown time"


def _owner_text(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {_shown(owner.get('started'))}"


def read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's owner record; None when there is no lock, {} when it cannot be read."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _create_exclusive(path: Path, text: str) -> bool:
    """Create `path` holding `text`, unless it exists (False). A reader never sees it half written: the text goes
    to a temp file first, and a hard link publishes it (O_CREAT|O_EXCL where links are not supported)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    try:
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _takeover_guard(directory: Path) -> Iterator[None]:
    """An exclusive `flock` on the run directory while a process judges the lock it found and removes it if stale:
    two runs taking over the same stale lock at once would otherwise both end up holding one (the second removing
    the first's fresh lock). The kernel drops it when the process dies, so it never goes stale itself."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (closing releases the flock)


@dataclass
class RunLock:
    """`bridle.lock` in a run directory: which process (pid, host, start time) owns it. Held for the run's life."""

    path: Path
    owner: dict[str, Any]

    @classmethod
    def acquire(cls, directory: Path, *, break_foreign: bool = False,
                note: Callable[[str], None] = say) -> RunLock:
        """Take the lock, or raise a BridleError naming its owner. A lock whose process is gone (same host) is
        taken over with a note; one of another host only with `break_foreign` (--overwrite)."""
        path = directory / LOCK_FILE
        pid = os.getpid()
        owner = {"pid": pid, "host": socket.gethostname(), "started": _now(), "pid_start": _process_start(pid),
                 "boot_id": _boot_id()}
        for _ in range(5):
            if _create_exclusive(path, json.dumps(owner, indent=1)):
                return cls(path, owner)
            with _takeover_guard(directory):  # one process at a time judges and removes a stale lock
                held = read_lock(path)
                if held is None:
                    continue  # released in between: try again
                if held and held.get("host") == owner["host"]:
                    if process_alive(held.get("pid", -1), held.get("pid_start"), held.get("boot_id")):
                        raise BridleError(f"{directory} is in use by another run ({_owner_text(held)}).\nWait for "
                                          "it to end, or pass another --output-dir.")
                    why = f"the run that held it is gone ({_owner_text(held)})"
                elif held and not break_foreign:
                    raise BridleError(f"{directory} is locked by a run on another host ({_owner_text(held)}); "
                                      f"Bridle cannot tell from {owner['host']} whether it still runs.\nIf it has "
                                      f"ended, pass --overwrite to break the lock and clear the directory, or delete "
                                      f"{path} to keep its files (e.g. to --resume it).")
                else:
                    why = (f"broken with --overwrite ({_owner_text(held)})" if held else "it could not be read")
                path.unlink(missing_ok=True)
                note(f"bridle: {directory}: took over the lock: {why}")
        raise BridleError(f"{directory}: could not take the lock {path}; another run may be starting there.")

    def release(self) -> None:
        if read_lock(self.path) == self.owner:
            self.path.unlink(missing_ok=True)


# -- what a directory holds -----------------------------------------------------------------------------------------
@dataclass
class HeldRun:
    """The run files in a directory: run.json's record, config.yaml's config, and which of Bridle's files are there."""

    directory: Path
    info: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, directory: Path) -> HeldRun:
        held = cls(directory)
        if not directory.is_dir():
            return held
        for name in (*RUN_FILES, *PLOT_FILES, *TRACKER_DIRS):
            path = directory / name
            if name == "checkpoints":  # complete ones: a half-written one is a leftover
                if list_checkpoints(path):
                    held.files.append(name)
            elif path.exists():
                held.files.append(name)
        with contextlib.suppress(OSError, ValueError):
            info = json.loads((directory / "run.json").read_text())
            held.info = info if isinstance(info, dict) else {}
        with contextlib.suppress(OSError, yaml.YAMLError):
            stored = yaml.safe_load((directory / "config.yaml").read_text())
            held.config = stored_math_config(stored) if isinstance(stored, dict) else None
        return held

    @property
    def fingerprint(self) -> str | None:
        if self.info.get("config_fingerprint"):
            return self.info["config_fingerprint"]
        return fingerprint_of(self.config) if self.config else None

    @property
    def finished(self) -> bool:
        return "finished" in self.info

    def describe(self) -> str:
        method = self.info.get("method") or (self.config or {}).get("method") or "unknown method"
        if not self.info and not self.config:
            return f"{method}; its files: {', '.join(self.files)}"
        text = f"{method}, started {_shown(self.info.get('started'))}"
        if self.finished:
            text += f", finished {_shown(self.info['finished'])}"
        return text


def unknown_entries(directory: Path) -> list[str]:
    """What --overwrite would not clear: entries that are not Bridle's run files (checkpoints/ looked into)."""
    known = {*RUN_FILES, *PLOT_FILES, *TRACKER_DIRS, LOCK_FILE}
    unknown = [p.name for p in directory.iterdir() if p.name not in known and not LEFTOVER.match(p.name)]
    checkpoints = directory / "checkpoints"
    if checkpoints.is_dir():
        unknown += [f"checkpoints/{p.name}" for p in checkpoints.iterdir()
                    if not CHECKPOINT_NAME.match(p.name) and not LEFTOVER.match(p.name)]
    elif checkpoints.exists():
        unknown.append("checkpoints")
    return sorted(unknown)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clear_run_files(directory: Path) -> None:
    """Delete Bridle's run files and leftovers in `directory` (not the lock); refuse when others are there."""
    unknown = unknown_entries(directory)
    if unknown:
        raise BridleError(f"--overwrite: {directory} also holds files Bridle did not write: {', '.join(unknown)}.\n"
                          "--overwrite clears only a run's own files; move those elsewhere, or pass another "
                          "--output-dir.")
    for path in directory.iterdir():
        if path.name != LOCK_FILE:
            _remove(path)


def clean_leftovers(directory: Path, note: Callable[[str], None] = say) -> list[str]:
    """Remove what killed runs left in `directory` and its checkpoints/: temp files and dirs of atomic writes
    (`*.tmp-PID`, `*.old-PID`) whose process is gone, and half-written checkpoints (`step-N.tmp`; only the lock's
    holder writes those). Returns the names removed."""
    removed = []
    for folder in (directory, directory / "checkpoints"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = LEFTOVER.match(path.name)
            stale = (match is not None and not process_alive(int(match.group(1)))) or (
                folder.name == "checkpoints" and path.name.endswith(".tmp") and CHECKPOINT_NAME.match(path.name))
            if stale:
                _remove(path)
                removed.append(str(path.relative_to(directory)))
    if removed:
        note(f"bridle: {directory}: removed what killed runs left: {', '.join(sorted(removed))}")
    return removed


# -- the claim ------------------------------------------------------------------------------------------------------
def check_run_dir(directory: Path, config: Any, method: str, note: Callable[[str], None] = say) -> None:
    """Whether this run may use `directory` as it stands (the lock held): BridleError if not. With --overwrite,
    clears another run's files."""
    held = HeldRun.read(directory)
    mine = math_config(config, method)
    fingerprint = fingerprint_of(mine)
    if config.overwrite:
        if held.files:
            clear_run_files(directory)
            note(f"bridle: {directory}: cleared the run it held ({held.describe()}) for --overwrite")
        return
    if not held.files:
        if config.resume == "yes":
            raise BridleError(f"--resume: {directory} holds no run to resume.\nDrop --resume to start a new run "
                              "there, or pass --resume auto to resume when there is a run and start fresh when there "
                              "is none.")
        return
    ours = list_checkpoints(directory / "checkpoints", fingerprint=fingerprint)
    same = held.fingerprint == fingerprint or (held.fingerprint is None and bool(ours))
    if not same:
        old = held.config
        complete = list_checkpoints(directory / "checkpoints")
        if old is None and complete:  # no config.yaml: the newest checkpoint may record it
            old = checkpoint_state(complete[-1]).get("config")
        changes = config_changes(old, mine) if old else []
        differs = ("\nIt differs from this run in: " + ", ".join(changes) + "." if changes else "")
        if config.resume != "no":
            raise BridleError(f"--resume: {directory} holds another run ({held.describe()}), not one of this config."
                              f"{differs}\nResume with that run's values, pass --overwrite to clear it, or pass "
                              "another --output-dir.")
        resume = "" if held.finished else " --resume to continue it,"
        raise BridleError(f"{directory} holds another run ({held.describe()}). Pass --overwrite to clear it,{resume} "
                          f"or another --output-dir.{differs}")
    if held.finished:
        nothing = ": there is nothing to resume" if config.resume != "no" else ""
        raise BridleError(f"{directory} holds a finished run of this config ({held.describe()}){nothing}.\nPass "
                          "--overwrite to run it again, or another --output-dir.")
    if config.resume == "no":
        if ours:
            raise BridleError(f"{directory} holds an unfinished run of this config ({held.describe()}; its newest "
                              f"checkpoint: {ours[-1].name}).\nPass --resume to continue it, --overwrite to start it "
                              "again, or another --output-dir.")
        raise BridleError(f"{directory} holds an unfinished run of this config ({held.describe()}) with no checkpoint "
                          "to resume from.\nPass --overwrite (or --resume auto) to start it again, or another "
                          "--output-dir.")
    found = resumable_checkpoint(directory / "checkpoints", config, method, required=config.resume == "yes")
    if found is None:
        note(f"bridle: --resume auto: {directory} has no checkpoint of this run; starting it fresh")
    elif len(ours) < len(list_checkpoints(directory / "checkpoints")):
        note(f"bridle: {directory}: checkpoints of other runs are ignored; resuming from {found.name}")


def is_main_process() -> bool:
    """Rank 0 of a distributed launch (torchrun / accelerate launch set RANK), or a single process."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def claim_run_dir(config: Any, method: str, note: Callable[[str], None] = say) -> Iterator[str]:
    """Own `config.output_dir` for the run inside the `with`: the lock taken, the directory checked (cleared with
    --overwrite), leftovers of killed runs removed. Yields the run's fingerprint. The lock goes on exit, whatever
    happened. Call it before anything loads: every refusal is a BridleError that says what to pass."""
    directory = Path(config.output_dir)
    fingerprint = run_fingerprint(config, method)
    if not is_main_process():  # the main process owns the directory for every rank
        yield fingerprint
        return
    if config.overwrite and config.resume != "no":
        raise ConfigError(f"--overwrite clears the run in {directory} that --resume would continue; pass one of "
                          "them.")
    if config.resume == "yes" and not directory.is_dir():
        raise BridleError(f"--resume: {directory} does not exist, so there is no run to resume.\nDrop --resume to "
                          "start a new run there, or pass --resume auto to resume when there is a run and start "
                          "fresh when there is none.")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    lock = None
    try:
        lock = RunLock.acquire(directory, break_foreign=config.overwrite, note=note)
        check_run_dir(directory, config, method, note)
        clean_leftovers(directory, note)
    except BaseException:
        if lock is not None:
            lock.release()
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: a refused run leaves nothing behind
        raise
    try:
        yield fingerprint
    finally:
        lock.release()
