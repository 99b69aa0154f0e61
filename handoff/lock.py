"""An exclusive, non-blocking lock file: a second run on the same folder refuses instead of
corrupting the first. The kernel releases it when the holder dies, even by SIGKILL."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from handoff.errors import PipelineError


@contextmanager
def exclusive_lock(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold `path` locked for the block; without `wait`, a held lock is a PipelineError at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as err:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise PipelineError(f"{path}: held by {holder}; another {what} is using this folder") from err
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        yield
