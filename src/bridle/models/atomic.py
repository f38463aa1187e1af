"""Write a directory all at once: readers see the old one, the new one, or none, never half of one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temp dir `<target>.tmp-<pid>` beside `target`; on success rename it to `target`.

    A crash or exception removes the temp dir, so a killed save never leaves a half-written `target`.
    `replace=False` is for caches: if another process finished `target` first, keep theirs and drop ours.
    """
    target = Path(target).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # leftover of a killed run that had our pid
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            if not replace:
                shutil.rmtree(tmp)
                return
            # Move the old one aside first so the window without `target` is one rename long.
            old = target.with_name(f"{target.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, target)
            except OSError:
                if replace or not target.exists():
                    raise
                shutil.rmtree(tmp)  # lost a race with a concurrent writer: theirs is complete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
