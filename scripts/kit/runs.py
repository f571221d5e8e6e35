"""How a kit run starts and ends: the options every flow takes; the Prefect connection for the
run, which carries the kit's tag; the pipeline lock, which each flow takes first; Ctrl-C and
SIGTERM; the exit status."""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from prefect import Flow, get_run_logger, tags
from prefect.context import SyncClientContext, TagsContext
from prefect.runtime import flow_run

from kit.connection import prefect_connection, server_answers
from kit.pipeline_lock import pipeline_lock
from kit.project import RUN_TAG
from mltoy import InputError


def flow_parser(doc: str, fail_once_help: str | None = None) -> argparse.ArgumentParser:
    """The options every flow takes: --[no-]show-metrics (also as the tour spells it), and
    --fail-once where the flow has a retry to show."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if fail_once_help:
        parser.add_argument("--fail-once", action="store_true", help=fail_once_help)
    parser.add_argument(
        "--show-metrics",
        "--show_metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log and print the metrics at the end (default: yes)",
    )
    return parser


_stopped_by = signal.SIGINT  # Ctrl-C, unless _interrupt saw SIGTERM or SIGHUP


def _interrupt(signum: int, frame: object) -> None:
    global _stopped_by
    _stopped_by = signal.Signals(signum)
    raise KeyboardInterrupt


@contextmanager
def pipeline_run(repo: Path) -> Iterator[None]:
    """What every kit flow's body runs in, however the run was started (make, `make serve`, a
    worker):

    - `repo`'s pipeline lock, for the rest of the run; the run's log says when it waits for
      another run;
    - task runs without the kit's tag. The tag marks the flow run, for the server's automations;
      a tagged task run would first ask the server for the tag's concurrency slots, which costs
      an API call per task and, on SQLite, a 2-s retry whenever it meets another write;
    - one API client for all its task runs, as Prefect gives a sync flow's. An async flow's engine
      has none for sync tasks, so each task run made its own: 0.1 s of CPU, loading the CA
      certificates, on the run's path (0.5 s of a cached Option B run).
    """
    what = f"flow run '{flow_run.name}' of '{flow_run.flow_name}'"
    with (pipeline_lock(repo, what, say=get_run_logger().info), TagsContext(current_tags=set()),
          SyncClientContext.get_or_create()):
        yield


def run_flow(pipeline_flow: Flow, /, *, server_needed_by: str | None = None, **parameters: Any) -> int:
    """Run a flow as every entry point does, and return the process's exit status: 0 when the
    run completed, DVC's code when DVC failed, 128 + the signal's number when stopped, else 1.
    With `server_needed_by` (what needs it), a run with no server to go to is an error rather
    than a run on a temporary one. The process's last step: it ends with everything frozen for
    the garbage collector (below).

    The kit's flows are `async def` though their tasks are not: Prefect's sync engine joins its
    heartbeat thread at the end of every run, and that thread sleeps in 1-s steps (0.5 s a run on
    average, measured 0.94 s for a short one); the async engine does not wait for it, and still
    sends the heartbeats that the crash automation watches.

    SIGTERM and SIGHUP (the terminal closed) stop the run as Ctrl-C does: Prefect marks it
    Crashed, its tasks stop their child processes, and the exit handlers send the run's last
    logs and events, then stop a temporary server (kit/connection.py). By default SIGTERM would
    kill the process at once and leave all of them.
    """
    # Ctrl-C too: asyncio.run would otherwise only cancel the flow at its next `await`, and the
    # kit's flow bodies wait on tasks without awaiting.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        return _run(pipeline_flow, server_needed_by, parameters)
    finally:
        # The interpreter's last garbage collections walk every object Prefect, pydantic and the
        # kit created: 0.7 to 0.8 s after a no-op run. Frozen, they are skipped; the exit handlers
        # (Prefect's last logs and events, a temporary server's stop) still run.
        gc.freeze()


def _run(pipeline_flow: Flow, server_needed_by: str | None, parameters: dict[str, Any]) -> int:
    try:
        with prefect_connection(server_needed_by) as api_url, tags(RUN_TAG):
            try:
                state = pipeline_flow(**parameters, return_state=True)
                if inspect.iscoroutine(state):
                    state = asyncio.run(state)
            except Exception as exc:
                _exit_if_server_gone(api_url, exc)
                raise
            if not state.is_completed():
                _exit_if_server_gone(api_url, state.message)
    except KeyboardInterrupt:
        name = "Ctrl-C" if _stopped_by == signal.SIGINT else _stopped_by.name
        print(f"Stopped ({name}): the run is marked Crashed in Prefect; the outputs on disk are the "
              "last good ones (`dvc status` shows what is stale).", file=sys.stderr)
        return 128 + _stopped_by
    if state.is_completed():
        return 0
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, InputError):
        print(f"error: {exc}", file=sys.stderr)
    return getattr(exc, "returncode", 1)


def _exit_if_server_gone(api_url: str | None, cause: object) -> None:
    """A server that stopped during the run: say so and exit at once, rather than let Prefect's
    exit handlers retry, for minutes, to send the run's events to a server that is gone."""
    if api_url is None or server_answers(api_url, timeout=1):
        return
    print(f"error: the Prefect server at {api_url.removesuffix('/api')} stopped during the run "
          f"({cause}). What the pipeline finished is on disk and intact (`dvc status` shows what "
          "is stale); start the server and run again.", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)
