"""The pipeline lock: one run of a repository's pipeline at a time; a second one waits its turn."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from kit.project import PIPELINE_LOCK


@contextmanager
def pipeline_lock(repo: Path, what: str, say: Callable[[str], object] = print) -> Iterator[None]:
    """Hold `repo`'s pipeline lock; if another run holds it, `say` who and wait, then go on.

    An OS file lock: the kernel releases it when its holder exits, even after `kill -9`, so a
    crashed run never blocks the next one. Every flow (however it was started: make, make serve,
    a worker) and `make data` take it.
    """
    path = repo / PIPELINE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            say(f"Waiting for the pipeline: held by {holder}. Ctrl-C stops waiting.")
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.truncate(0)
        lock.write(f"{what} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n")
        lock.flush()
        yield
