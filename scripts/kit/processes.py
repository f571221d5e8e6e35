"""Stopping what the kit starts: a background service's process group, or a command's process
tree."""

from __future__ import annotations

import os
import signal
import time

import psutil

STOP_TIMEOUT = 20


def stop_group(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group that `pid` leads (a server, a Dask scheduler and its workers),
    wait for it to go, then SIGKILL what lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is our child (a start that failed, a test's process):
    until then it stays a zombie, still a member of its group, and the group never looks gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def terminate_tree(pid: int) -> None:
    """SIGTERM a process and every process it started (DVC and the stage it runs). They share our
    process group, so Ctrl-C in a terminal and a `kill -9` of the group reach them too; this
    covers a SIGTERM sent to the flow's process alone, which DVC would otherwise outlive."""
    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in family:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
