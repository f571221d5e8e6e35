"""The Prefect connection: runs go to the kit's server when it answers, else to a temporary one.

The client's API URL is written nowhere: it is derived from the same server settings that
`prefect server start` reads (prefect.toml, overridden by PREFECT_SERVER_API_*), and used only
when that server answers its health check. A PREFECT_API_URL the user set is used as it is.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

from kit.processes import stop_group

# How long a server may take to answer its health check before the run goes on without it:
# nothing listening fails at once; a busy server can take a few seconds.
PROBE_SECONDS = 5.0


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


def credentials_refused(api_url: str) -> bool:
    """Whether the server refuses this process's credentials (401). Its health check skips auth,
    so the probe alone cannot tell."""
    try:
        urllib.request.urlopen(api_request(f"{api_url.rstrip('/')}/admin/version"), timeout=PROBE_SECONDS).close()
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        pass  # it answered its health check a moment ago; let Prefect report anything else
    return False


def _check_credentials(api_url: str) -> None:
    if credentials_refused(api_url):
        raise SystemExit(
            f"error: the Prefect server at {api_url.removesuffix('/api')} asks for credentials "
            "that this run does not have or that it refuses: set PREFECT_AUTH=user:pass "
            "(as given to make prefect-start)"
        )


def spawn_server(env: dict[str, str], log: BinaryIO, *args: str) -> subprocess.Popen:
    """`prefect server start ARGS` in its own session (Ctrl-C in the caller's terminal does not
    reach it: it is stopped on purpose), its output to `log`."""
    return subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_server(server: subprocess.Popen, api_url: str, timeout: float) -> bool:
    """Whether the server started as `server` answers at `api_url` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_answers(api_url, timeout=1):
            return True
        if server.poll() is not None:
            return False
        time.sleep(0.1)
    return False


# A temporary server's first start creates the database (7 s here); later ones take 3 to 4 s.
TEMPORARY_START_TIMEOUT = 90.0


@contextmanager
def temporary_server() -> Iterator[str]:
    """A Prefect server for this process's runs, on the project's database and a free port, stopped
    when the process exits; yields its API URL.

    It is `prefect server start` without the UI, rather than the temporary server that Prefect's
    client starts itself: for that one the client imports the whole server app first (2 to 2.5 s
    of a run, measured here). It does not register block types (1.2 s on a new database): runs do
    not use them, and without the memo that Prefect would then write, the next `make
    prefect-start` registers them. Its output goes to $PREFECT_HOME/temporary-server.log.
    """
    home = get_current_settings().home
    home.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port),
               PREFECT_SERVER_REGISTER_BLOCKS_ON_START="false",
               PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION="false")
    log_path = home / "temporary-server.log"
    with open(log_path, "wb") as log:
        server = spawn_server(env, log, "--no-ui")
    # Stopped after Prefect's exit handlers, which send the run's last logs and events to it
    # (they run first: threading's exit hooks come before atexit's).
    atexit.register(stop_group, server.pid, 5)
    if not wait_for_server(server, url, TEMPORARY_START_TIMEOUT):
        stopped = server.poll() is not None
        stop_group(server.pid)
        what = "stopped while starting" if stopped else f"did not answer within {TEMPORARY_START_TIMEOUT:.0f} s"
        raise SystemExit(f"error: Prefect's temporary server {what}: {_error_in(log_path)} (its log: {log_path})")
    # Its runs' links ("View at") point to the kit's server: `make prefect-start` shows them there.
    links = {} if get_current_settings().ui_url else {PREFECT_UI_URL: server_api_url().removesuffix("/api")}
    with temporary_settings(updates={PREFECT_API_URL: url, **links}):
        yield url


def _error_in(log: Path) -> str:
    """The line of a server's log that says what went wrong: its last exception, else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)]
    return (errors or lines or ["it wrote nothing"])[-1]


@contextmanager
def prefect_connection(server_needed_by: str | None = None) -> Iterator[str]:
    """Send this process's runs to the kit's server when it answers, else to a temporary one;
    yields the server's API URL.

    A PREFECT_API_URL that the user set on purpose and that does not answer is an error: falling
    back would hide their runs somewhere they do not look. So is no server at all when
    `server_needed_by` says what needs one.
    """
    chosen = get_current_settings().api.url
    if chosen:
        if not server_answers(chosen):
            raise SystemExit(
                f"error: PREFECT_API_URL={chosen} does not answer as a Prefect server; start it, "
                "or unset PREFECT_API_URL to let the kit pick its own server"
            )
        _check_credentials(chosen)
        yield chosen
        return
    url = server_api_url()
    if server_answers(url):
        _check_credentials(url)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
        return
    if server_needed_by:
        raise _no_server(server_needed_by, url)
    home = get_current_settings().home
    print(
        f"No Prefect server at {url.removesuffix('/api')}: this run uses a temporary one on the "
        f"project's database ({home}/prefect.db); `make prefect-start` shows it in the UI.",
        flush=True,
    )
    with temporary_server() as temporary_url:
        yield temporary_url


def require_server(what: str) -> str:
    """The API URL of the Prefect server that `what` needs: PREFECT_API_URL where set, else the
    kit's server; exit with one line when it does not answer. There is no temporary-server
    fallback here: deployments, schedules, workers and automations live on a server, and one that
    stops with this process would take them with it."""
    url = get_current_settings().api.url or server_api_url()
    if not server_answers(url):
        raise _no_server(what, url)
    _check_credentials(url)
    return url


def _no_server(what: str, url: str) -> SystemExit:
    return SystemExit(
        f"error: {what} needs a running Prefect server, and none answers at "
        f"{url.removesuffix('/api')}: start one with `make prefect-start` (with the same "
        "PREFECT_PORT), or set PREFECT_API_URL to your team's server"
    )


@contextmanager
def server_connection(what: str) -> Iterator[str]:
    """Connect this process to the server that `what` needs (require_server); yield its API URL."""
    url = require_server(what)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url
