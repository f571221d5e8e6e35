"""Start, stop and inspect the project's Prefect server.

    python scripts/server.py start|stop|status|doctor  (make prefect-start|prefect-stop|prefect-status|doctor)

The server reads the same settings as the flows (prefect.toml, overridden by PREFECT_* variables),
so the UI, the API and the runs agree on host, port and database. Unlike `prefect server start
--background`, `start` keeps the server's output in a log file, waits until the server answers,
and cleans up a pid file left by a server that was killed. The pid file is Prefect's own
(`$PREFECT_HOME/server.pid`), so `prefect server stop` works on it too. `doctor` reports, without
changing anything, what to look at when something is off.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import kit  # first: it moves to the project root, where Prefect reads prefect.toml
from prefect.settings import get_current_settings

import get_data  # scripts/get_data.py: where the data and its record are

START_TIMEOUT = 90  # a first start creates the database; later ones take a few seconds
STOP_TIMEOUT = 20


def home() -> Path:
    return get_current_settings().home.resolve()


def pid_file() -> Path:
    return home() / "server.pid"


def log_file() -> Path:
    return home() / "server.log"


def ui_url() -> str:
    return kit.server_api_url().removesuffix("/api")


def database() -> str:
    url = get_current_settings().server.database.connection_url
    text = url.get_secret_value() if url else f"sqlite+aiosqlite:///{home()}/prefect.db"
    if text.startswith("sqlite"):
        return str(Path(text.split("///", 1)[-1]).resolve())
    return text.split("@")[-1]  # no credentials in the output


def our_server_pid(clean: bool = True) -> int | None:
    """The pid in the pid file, if that process is alive and is a Prefect server; else None,
    after removing (with `clean`) a pid file that a killed server left behind."""
    path = pid_file()
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        cmdline = []
    if b"prefect" in b" ".join(cmdline) and b"server" in cmdline and b"start" in cmdline:
        return pid
    if clean and path.exists():
        path.unlink()
        print(f"Removed a stale pid file ({path}): its server is gone.")
    return None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start() -> int:
    api = get_current_settings().server.api
    pid = our_server_pid()
    if pid and kit.server_answers(kit.server_api_url()):
        print(f"Prefect server already running (pid {pid}): {ui_url()}  (log: {log_file()})")
        return 0
    if pid:
        print(f"error: the server (pid {pid}) is not answering at {ui_url()}; see {log_file()}, "
              "or `make prefect-stop` and start again", file=sys.stderr)
        return 1
    if not port_is_free(api.host, api.port):
        print(f"error: port {api.port} on {api.host} is in use by another program; pick another "
              f"port: make prefect-start PREFECT_PORT={api.port + 100}", file=sys.stderr)
        return 1
    home().mkdir(parents=True, exist_ok=True)
    with open(log_file(), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives this command, and Ctrl-C in this shell
        )
    pid_file().write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if kit.server_answers(kit.server_api_url(), timeout=1):
            print(f"Prefect server running (pid {proc.pid}): {ui_url()}  (log: {log_file()})")
            return 0
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    # No half-started state: stop what we started and say why.
    _terminate(proc.pid)
    pid_file().unlink(missing_ok=True)
    tail = log_file().read_text(errors="replace").splitlines()[-5:]
    print(f"error: the server did not come up within {START_TIMEOUT} s; the end of {log_file()}:",
          *tail, sep="\n  ", file=sys.stderr)
    return 1


def _terminate(pid: int) -> None:
    """SIGTERM the server's process group (it is its leader), then SIGKILL if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:  # reap it when it is our child (the start that failed)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop() -> int:
    pid = our_server_pid()
    if pid is None:
        print("No Prefect server started by the kit is running.")
        return 0
    _terminate(pid)
    pid_file().unlink(missing_ok=True)
    print(f"Stopped the Prefect server (pid {pid}); port {get_current_settings().server.api.port} is free.")
    return 0


def status() -> int:
    pid = our_server_pid()
    up = kit.server_answers(kit.server_api_url())
    state = f"up (pid {pid})" if up and pid else "up (not started by the kit)" if up else "down"
    rows = {
        "server": state,
        "UI": ui_url(),
        "API": kit.server_api_url(),
        "database": database(),
        "log": str(log_file()),
        "versions": versions(),
    }
    for key, value in rows.items():
        print(f"{key:<9} {value}")
    return 0


def versions() -> str:
    return f"prefect {metadata.version('prefect')}, dvc {metadata.version('dvc')}, python {sys.version.split()[0]}"


# --- doctor -----------------------------------------------------------------------------------

RAW = get_data.RAW.relative_to(kit.ROOT)  # shown relative to the project, as a user types it


def prefect_settings_sources() -> list[dict[str, str]]:
    """Prefect's `prefect config view --show-sources -o json` (its settings that are set, with
    value and source), called in this process: a second Prefect import would double doctor's time.
    The command prints to Prefect's CLI console; a buffer stands in for it."""
    import prefect.cli._app as prefect_cli
    from prefect.cli.config import view
    from rich.console import Console

    buffer, console = io.StringIO(), prefect_cli.console
    prefect_cli.console = Console(file=buffer, width=1_000_000)
    try:
        view(show_sources=True, output="json")
    finally:
        prefect_cli.console = console
    return json.loads(buffer.getvalue())["settings"]


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _api_get(url: str) -> object:
    """GET a JSON answer from the API with this shell's credentials, if any."""
    with urllib.request.urlopen(kit.api_request(url), timeout=kit.PROBE_SECONDS) as resp:
        return json.load(resp)


def _server_lines() -> tuple[list[str], bool]:
    """Whether the server answers, accepts this shell's credentials and serves this project's
    Prefect home; (line, is_a_problem)."""
    chosen = get_current_settings().api.url
    url = chosen or kit.server_api_url()
    where = url.removesuffix("/api")
    if not kit.server_answers(url):
        if chosen:
            return [f"down at {where}, and PREFECT_API_URL points there: runs stop with an error"], True
        stale = f"; {pid_file()} is stale, the next start removes it" if pid_file().exists() else ""
        return [f"down at {where}: runs use a temporary server on the database below{stale}"], False
    pid = our_server_pid(clean=False)
    up = f"up at {where} (pid {pid}, started by the kit)" if pid else (
        f"up at {where} (not started by the kit: no live pid in {pid_file()})")
    # /health needs no credentials; the rest of the API does when the server has PREFECT_AUTH set.
    try:
        version = _api_get(f"{url}/admin/version")
        served_home = Path(_api_get(f"{url}/admin/settings")["home"]).resolve()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return [up, "problem: it refuses this shell's credentials (401): pass the "
                    "PREFECT_AUTH=user:pass it was started with"], True
        return [up, f"problem: its API answered {exc.code} ({exc.url})"], True
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [up, f"problem: its API did not answer as expected: {exc}"], True
    up += f", Prefect {version}"
    if served_home != home():
        return [up, f"problem: it serves another Prefect home, {served_home}: runs from here land in "
                f"its database, not in {home()}"], True
    return [up], False


def _data_line() -> tuple[str, bool]:
    record = get_data.RECORD.relative_to(kit.ROOT)
    if not RAW.is_file():
        return f"problem: {RAW} missing: `make data` restores it", True
    expected = get_data.recorded_md5()
    actual = hashlib.md5(RAW.read_bytes()).hexdigest()
    if actual != expected:
        return f"problem: {RAW} has md5 {actual}, not the {expected} recorded in {record}", True
    return f"{RAW} present, md5 {actual} matches {record}", False


def doctor() -> int:
    """Settings and where each comes from, the server, the database, versions, the data and
    `dvc status`: read-only, and 0 unless a check finds a problem."""
    # DVC's commands are the slow part: they run side by side while the rest is checked.
    dvc_config = _spawn(sys.executable, "-m", "dvc", "config", "--list", "--show-origin")
    dvc_status = _spawn(sys.executable, "-m", "dvc", "status")
    server, server_bad = _server_lines()
    data, data_bad = _data_line()
    db = database()
    if Path(db).is_file():
        db += f" ({Path(db).stat().st_size / 1e6:.1f} MB)"
    elif db.startswith("/"):
        db += " (not created yet: the first run or server start creates it)"

    try:
        prefect_settings = prefect_settings_sources()
    except Exception as exc:  # Prefect's internals moved: say so, and go on with the rest
        prefect_settings = None
        print(f"problem: could not read Prefect's settings sources ({exc!r}); "
              "`prefect config view --show-sources` shows them")
    rows = [("setting", "value", "source")]
    rows += [(s["name"], s["value"], s["source"]) for s in prefect_settings or []]
    if "PREFECT_API_URL" not in {name for name, _, _ in rows}:
        rows.append(("PREFECT_API_URL", "(not set)",
                     f"scripts/kit.py uses {kit.server_api_url()} when it answers, else a temporary server"))
    rows.append(("DO_NOT_TRACK", os.environ.get("DO_NOT_TRACK", ""), "env (scripts/kit.py sets 1 where unset)"))
    out, _ = dvc_config.communicate()
    for line in out.splitlines():  # "origin<TAB>section.key=value"
        origin, _, setting = line.partition("\t")
        name, _, value = setting.partition("=")
        rows.append((f"dvc {name}", value, origin))
    print("Settings, from `prefect config view --show-sources` and `dvc config --list --show-origin`;")
    print("unlisted ones have their defaults.")
    name_width = max(len(name) for name, _, _ in rows)
    value_width = max(len(str(value)) for _, value, _ in rows)
    for name, value, source in rows:
        print(f"  {name:<{name_width}}  {value!s:<{value_width}}  {source}")

    status_out, _ = dvc_status.communicate()
    status_lines = status_out.strip().splitlines()
    if dvc_status.returncode:
        status_lines.insert(0, f"problem: `dvc status` exited {dvc_status.returncode}:")
    rows = {
        "server": server,
        "database": db,
        "log": str(log_file()),
        "versions": versions(),
        "data": data,
        "dvc status": status_lines or [""],
    }
    for key, value in rows.items():
        lines = value if isinstance(value, list) else [value]
        print(f"{key:<11}{lines[0]}", *(f"{'':<11}{line}" for line in lines[1:]), sep="\n")
    problems = server_bad + data_bad + (dvc_status.returncode != 0) + (prefect_settings is None)
    if problems:
        print(f"{problems} problem(s) above.")
    return 1 if problems else 0


if __name__ == "__main__":
    commands = {"start": start, "stop": stop, "status": status, "doctor": doctor}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python scripts/server.py {'|'.join(commands)}")
    sys.exit(commands[sys.argv[1]]())
