"""What the kit's scripts share: the project root, the Prefect connection, the pipeline lock and
the "metrics summary" task.

Import it before Prefect: importing it moves the process to the project root, because Prefect
reads prefect.toml (the one place the kit's Prefect settings live) from the current folder when
it is imported. Paths a user typed are resolved against the folder they typed them in
(`user_path`), so the scripts work from any folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CALLER_CWD = Path.cwd()
os.chdir(ROOT)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for `import mltoy`
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client telemetry (prefect.toml has no key for it)

from prefect import get_run_logger, task  # noqa: E402
from prefect.artifacts import Artifact, create_table_artifact  # noqa: E402
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings  # noqa: E402

import metrics  # noqa: E402  (scripts/metrics.py)

# How long a server may take to answer its health check before the run goes on without it.
PROBE_SECONDS = 2.0


def is_kit_pipeline(repo: Path) -> bool:
    """Whether `repo` runs this kit's stages (and so takes its params schema and data checks)."""
    return (repo / "mltoy" / "pipeline.py").is_file()


def user_path(path: str | Path) -> Path:
    """A path typed by the user, relative to the folder they ran the command from."""
    return (CALLER_CWD / Path(path).expanduser()).resolve()


# --- Prefect connection -----------------------------------------------------------------------


def server_api_url() -> str:
    """The API URL of the kit's server, from the same settings `prefect server start` reads."""
    api = get_current_settings().server.api
    host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host
    return f"http://{host}:{api.port}/api"


def server_answers(api_url: str, timeout: float = PROBE_SECONDS) -> bool:
    """True when a Prefect server answers its health check at `api_url` within `timeout`."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200 and json.load(resp) is True
    except (OSError, ValueError):
        return False


@contextmanager
def prefect_connection() -> Iterator[None]:
    """Send this process's runs to the kit's server when it answers, else to a temporary one.

    A PREFECT_API_URL that the user set on purpose and that does not answer is an error: falling
    back would hide their runs somewhere they do not look.
    """
    chosen = get_current_settings().api.url
    if chosen:
        if not server_answers(chosen):
            raise SystemExit(
                f"error: PREFECT_API_URL={chosen} does not answer as a Prefect server; start it, "
                "or unset PREFECT_API_URL to let the kit pick its own server"
            )
        yield
        return
    url = server_api_url()
    if server_answers(url):
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
        return
    home = get_current_settings().home
    print(
        f"No Prefect server at {url.removesuffix('/api')}: this run uses a temporary one on the "
        f"project's database ({home}/prefect.db); `make prefect-start` shows it in the UI.",
        flush=True,
    )
    yield


# --- one pipeline run at a time ---------------------------------------------------------------


@contextmanager
def pipeline_lock(repo: Path, what: str) -> Iterator[None]:
    """Hold the repository's pipeline lock; a second run waits for the first, then goes on.

    An OS file lock: the kernel releases it when its holder exits, even after `kill -9`, so a
    crashed run never blocks the next one. Both flows and `make data` take it.
    """
    path = repo / ".dvc" / "tmp" / "kit-pipeline.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            print(f"Waiting for the pipeline: held by {holder}. Ctrl-C stops waiting.", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.truncate(0)
        lock.write(f"{what} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})\n")
        lock.flush()
        yield


# --- the task both flows end with -------------------------------------------------------------


@task(name="metrics summary")
def metrics_summary(metrics_path: Path, show: bool = True) -> dict[str, float]:
    """Publish the run's metrics as a table artifact, with the change against the previous
    published run; with `show`, also log them (`Metrics: {...}`) and print them as a table."""
    if not metrics_path.is_file():  # a repository given with --repo may keep none there
        get_run_logger().warning("No metrics file at %s", metrics_path)
        return {}
    values = metrics.read_metrics(metrics_path)
    latest = Artifact.get(metrics.ARTIFACT_KEY)  # read before publishing: it is the previous run's
    previous = metrics.artifact_values(latest.data) if latest else None
    create_table_artifact(
        key=metrics.ARTIFACT_KEY,
        table=metrics.artifact_table(values, previous),
        description=metrics.artifact_description(
            str(metrics_path), latest.created if previous is not None else None
        ),
    )
    if show:
        get_run_logger().info("Metrics: %s", json.dumps(values))
        print(metrics.format_table(values), flush=True)
    return values
