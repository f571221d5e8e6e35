"""Start, stop and inspect the project's Prefect server.

    python scripts/server.py start|stop|status  (make prefect-start|prefect-stop|prefect-status)

The server reads the same settings as the flows (prefect.toml, overridden by PREFECT_* variables),
so the UI, the API and the runs agree on host, port and database. Unlike `prefect server start
--background`, `start` keeps the server's output in a log file, waits until the server answers,
and cleans up a pid file left by a server that was killed. The pid file is Prefect's own
(`$PREFECT_HOME/server.pid`), so `prefect server stop` works on it too.
"""

from __future__ import annotations

import os
import socket
import sys

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect.settings import get_current_settings  # noqa: E402

from kit.connection import server_answers, server_api_url, spawn_server, wait_for_server  # noqa: E402
from kit.processes import stop_group  # noqa: E402
from kit.server_files import database, home, log_file, our_server_pid, pid_file, versions  # noqa: E402

START_TIMEOUT = 90  # a first start creates the database; later ones take a few seconds


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ui_url() -> str:
    return server_api_url().removesuffix("/api")


def start() -> int:
    api = get_current_settings().server.api
    pid = our_server_pid()
    if pid and server_answers(server_api_url()):
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
    # The links the server writes itself (in the automations' notifications) need its UI's address,
    # which Prefect derives from PREFECT_API_URL: a client setting, unset in the server's process.
    env = {"PREFECT_UI_URL": ui_url(), **os.environ}
    with open(log_file(), "ab") as log:
        proc = spawn_server(env, log)  # in its own session: it outlives this command
    pid_file().write_text(f"{proc.pid}\n")
    if wait_for_server(proc, server_api_url(), START_TIMEOUT):
        print(f"Prefect server running (pid {proc.pid}): {ui_url()}  (log: {log_file()})")
        return 0
    # No half-started state: stop what we started and say why.
    stop_group(proc.pid)
    pid_file().unlink(missing_ok=True)
    tail = log_file().read_text(errors="replace").splitlines()[-5:]
    print(f"error: the server did not come up within {START_TIMEOUT} s; the end of {log_file()}:",
          *tail, sep="\n  ", file=sys.stderr)
    return 1


def stop() -> int:
    pid = our_server_pid()
    if pid is None:
        print("No Prefect server started by the kit is running.")
        return 0
    stop_group(pid)
    pid_file().unlink(missing_ok=True)
    print(f"Stopped the Prefect server (pid {pid}); port {get_current_settings().server.api.port} is free.")
    return 0


def status() -> int:
    pid = our_server_pid()
    up = server_answers(server_api_url())
    state = f"up (pid {pid})" if up and pid else "up (not started by the kit)" if up else "down"
    rows = {
        "server": state,
        "UI": ui_url(),
        "API": server_api_url(),
        "database": database(),
        "log": str(log_file()),
        "versions": versions(),
    }
    for key, value in rows.items():
        print(f"{key:<9} {value}")
    return 0


if __name__ == "__main__":
    commands = {"start": start, "stop": stop, "status": status}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python scripts/server.py {'|'.join(commands)}")
    sys.exit(commands[sys.argv[1]]())
