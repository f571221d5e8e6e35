"""What the kit's scripts share: the project root, the Prefect connection, the pipeline lock and
the "metrics summary" task.

Import it before Prefect: importing it moves the process to the project root, because Prefect
reads prefect.toml (the one place the kit's Prefect settings live) from the current folder when
it is imported. Paths a user typed are resolved against the folder they typed them in
(`user_path`), so the scripts work from any folder.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
CALLER_CWD = Path.cwd()
os.chdir(ROOT)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for `import mltoy`
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client telemetry (prefect.toml has no key for it)

from prefect import Flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import Artifact, create_table_artifact  # noqa: E402
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings  # noqa: E402

import metrics  # noqa: E402  (scripts/metrics.py)

# How long a server may take to answer its health check before the run goes on without it:
# nothing listening fails at once; a busy server can take a few seconds.
PROBE_SECONDS = 5.0


def is_kit_pipeline(repo: Path) -> bool:
    """Whether `repo` runs this kit's stages (and so takes its params schema and data checks)."""
    return (repo / "mltoy" / "pipeline.py").is_file()


def flow_parser(doc: str, fail_once_help: str) -> argparse.ArgumentParser:
    """The options both flows take: --fail-once and --[no-]show-metrics (also as the tour spells it)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--fail-once", action="store_true", help=fail_once_help)
    parser.add_argument(
        "--show-metrics",
        "--show_metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log and print the metrics at the end (default: yes)",
    )
    return parser


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


def api_request(url: str) -> urllib.request.Request:
    """A request to the Prefect API carrying this process's basic-auth credentials, if any."""
    request = urllib.request.Request(url)
    if secret := get_current_settings().api.auth_string:
        token = base64.b64encode(secret.get_secret_value().encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def check_credentials(api_url: str) -> None:
    """Fail in one line when the server asks for credentials this process does not have (its
    health check skips auth, so the probe alone cannot tell; the run would die on a 401)."""
    request = api_request(f"{api_url.rstrip('/')}/admin/version")
    try:
        urllib.request.urlopen(request, timeout=PROBE_SECONDS).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise SystemExit(
                f"error: the Prefect server at {api_url.removesuffix('/api')} asks for credentials "
                "that this run does not have or that it refuses: set PREFECT_AUTH=user:pass "
                "(as given to make prefect-start)"
            ) from None
    except OSError:
        pass  # it answered its health check a moment ago; let Prefect report anything else


@contextmanager
def prefect_connection() -> Iterator[str | None]:
    """Send this process's runs to the kit's server when it answers, else to a temporary one;
    yields the server's API URL, or None for a temporary server.

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
        check_credentials(chosen)
        yield chosen
        return
    url = server_api_url()
    if server_answers(url):
        check_credentials(url)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
        return
    home = get_current_settings().home
    print(
        f"No Prefect server at {url.removesuffix('/api')}: this run uses a temporary one on the "
        f"project's database ({home}/prefect.db); `make prefect-start` shows it in the UI.",
        flush=True,
    )
    yield None


# --- stopping and failing cleanly --------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_like_ctrl_c() -> None:
    """Make SIGTERM stop a run as Ctrl-C does: Prefect marks the run Crashed, the task stops its
    child processes, and Prefect's exit handlers stop a temporary server it started (by default,
    SIGTERM kills the process at once and leaves that server running)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)  # the terminal closed


def terminate_tree(pid: int) -> None:
    """SIGTERM a process and every process it started (DVC and the stage command it runs).

    They share our process group, so Ctrl-C in a terminal and a `kill -9` of the group reach
    them too; this covers a SIGTERM sent to the flow's process alone.
    """
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    for member in tree:
        try:
            os.kill(member, signal.SIGTERM)
        except ProcessLookupError:
            pass


def run_flow(what: str, repo: Path, pipeline_flow: Flow, /, **parameters: Any) -> int:
    """Run a flow as both entry points do, and return the process's exit status: 0 when the run
    completed, DVC's code when `dvc repro` failed, 130/143 when stopped by Ctrl-C/SIGTERM, else 1."""
    stop_like_ctrl_c()
    try:
        with prefect_connection() as api_url, pipeline_lock(repo, what):
            try:
                state = pipeline_flow(**parameters, return_state=True)
            except Exception as exc:
                _exit_if_server_gone(api_url, exc)
                raise
            if not state.is_completed():
                _exit_if_server_gone(api_url, state.message)
    except KeyboardInterrupt as exc:
        print(f"Stopped ({str(exc) or 'Ctrl-C'}): the run is marked Crashed in Prefect; the outputs on "
              "disk are the last good ones (`dvc status` shows what is stale).", file=sys.stderr)
        name = str(exc) or "SIGINT"
        return 128 + signal.Signals[name].value if name in signal.Signals.__members__ else 130
    if state.is_completed():
        return 0
    exc = state.result(raise_on_failure=False)
    # Imported here: scripts/server.py imports this module too, and needs no pandas.
    from mltoy.params import ParamsError
    from mltoy.pipeline import DataError

    if isinstance(exc, (ParamsError, DataError)):
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


def on_failure(obj, run, state) -> None:
    """Hook for flows and tasks: log what failed and, with NOTIFY_URL set, POST it as JSON.

    A hook that fails itself only logs that: it never hides the original failure.
    """
    kind = "Task" if hasattr(run, "task_key") else "Flow"
    message = state.message or state.name
    logger = get_run_logger()
    logger.error("%s %r failed: %s", kind, obj.name, message)
    url = os.environ.get("NOTIFY_URL")
    if not url:
        return
    body = {"kind": kind.lower(), "name": obj.name, "run": run.name, "run_id": str(run.id),
            "state": state.name, "message": message}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except OSError as exc:
        logger.warning("Could not notify %s: %s", url, exc)


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
