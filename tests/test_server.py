"""The Prefect server as a user meets it: `scripts/server.py start|stop|status` and
`scripts/doctor.py` (the make targets), runs with and without a server, optional basic auth, and quiet
logs.

A server start costs 10-20 s here, so only the tests about its lifecycle start their own (each on
a free port with the test's own Prefect home); the rest use the session's server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from conftest import MAKE, Repo, api, flow_run_name, free_port, view_at

# What a machine without internet must not show: telemetry, update checks and the "database is
# locked" traceback a temporary server's telemetry heartbeat logged when its settings were missing.
NOISE = re.compile(r"telemetry|Failed to send|database is locked|Traceback", re.I)


def assert_quiet(text: str) -> None:
    noisy = [line for line in text.splitlines() if NOISE.search(line)]
    assert not noisy, "\n".join(noisy)


def port_is_free(port: int) -> bool:
    """Nothing listens there, and a new server can bind it (as Prefect's, with SO_REUSEADDR)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def servers_in(folder: Path) -> list[int]:
    """Pids of Prefect servers running in `folder` (the kit's scripts move to the project root)."""
    pids = []
    for proc in psutil.process_iter():
        try:
            cmdline = proc.cmdline()
            if "prefect" in " ".join(cmdline[1:3]) and cmdline[3:5] == ["server", "start"]:
                if Path(proc.cwd()) == folder:
                    pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


def wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} still running after {timeout} s")


class Kit:
    """A kit copy with its own Prefect home and a free port for its own server."""

    def __init__(self, repo: Repo, **env: str):
        self.repo = repo
        self.port = free_port()
        self.home = Path(repo.env["PREFECT_HOME"])
        repo.env = dict(repo.env, PREFECT_SERVER_API_PORT=str(self.port), **env)

    def server(self, command: str, **kw) -> subprocess.CompletedProcess:
        return self.repo.py("scripts/server.py", command, check=False, **kw)

    @property
    def pid_file(self) -> Path:
        return self.home / "server.pid"


def _kit_on_its_own_port(repo: Repo):
    """A copy on its own port; any server a test left running is stopped at the end."""
    k = Kit(repo)
    yield k
    if k.pid_file.exists():
        k.server("stop")


@pytest.fixture
def kit(repo):
    yield from _kit_on_its_own_port(repo)


@pytest.fixture
def built_kit(built_repo):
    yield from _kit_on_its_own_port(built_repo)


def test_start_twice_runs_one_server_stop_frees_the_port_and_stops_only_ours(kit, tmp_path):
    first = kit.server("start")
    assert first.returncode == 0, first.stdout
    pid = int(kit.pid_file.read_text())
    assert first.stdout.strip() == (
        f"Prefect server running (pid {pid}): http://127.0.0.1:{kit.port}  (log: {kit.home}/server.log)"
    )
    second = kit.server("start")
    assert second.returncode == 0
    assert second.stdout.startswith(f"Prefect server already running (pid {pid}): http://127.0.0.1:{kit.port}")
    assert servers_in(kit.repo.path) == [pid]

    # `stop` from another Prefect home on the same port, whose pid file names a live program that
    # is not a Prefect server (a pid reused after a crash): it stops neither.
    other = dict(kit.repo.env, PREFECT_HOME=str(tmp_path / "other-home"))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "other-home").mkdir()
        (tmp_path / "other-home" / "server.pid").write_text(f"{sleeper.pid}\n")
        out = kit.repo.py("scripts/server.py", "stop", env=other).stdout
        assert out.splitlines() == [
            f"Removed a stale pid file ({tmp_path}/other-home/server.pid): its server is gone.",
            "No Prefect server started by the kit is running.",
        ]
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert api(kit.port, "GET", "/health") == (200, True) and servers_in(kit.repo.path) == [pid]

    stop = kit.server("stop")
    assert stop.stdout.strip() == f"Stopped the Prefect server (pid {pid}); port {kit.port} is free."
    assert port_is_free(kit.port) and not kit.pid_file.exists() and servers_in(kit.repo.path) == []
    assert_quiet((kit.home / "server.log").read_text())


def test_a_port_taken_by_another_program_is_named_with_the_way_out(kit):
    with socket.socket() as other:
        other.bind(("127.0.0.1", kit.port))
        other.listen()
        start = kit.server("start")
    assert start.returncode == 1
    assert start.stdout.strip() == (
        f"error: port {kit.port} on 127.0.0.1 is in use by another program; pick another port: "
        f"make prefect-start PREFECT_PORT={kit.port + 100}"
    )
    assert not kit.pid_file.exists() and servers_in(kit.repo.path) == []


def test_after_kill_9_runs_go_on_without_a_server_and_the_next_start_recovers_and_shows_them(built_kit):
    kit = built_kit
    assert kit.server("start").returncode == 0
    killed = int(kit.pid_file.read_text())
    os.kill(killed, signal.SIGKILL)
    wait_gone(killed)

    run = kit.repo.py("scripts/flow_dvc.py", "--no-show-metrics").stdout
    notice = (
        f"No Prefect server at http://127.0.0.1:{kit.port}: this run uses a temporary one on the "
        f"project's database ({kit.home}/prefect.db); `make prefect-start` shows it in the UI."
    )
    assert run.splitlines()[0] == notice and run.count("No Prefect server") == 1
    name = flow_run_name(run)
    assert f"Flow run '{name}' - Finished in state Completed()" in run
    # The temporary server stopped with the run; its link points where `make prefect-start` serves.
    assert servers_in(kit.repo.path) == [] and view_at(run)[0] == kit.port

    start = kit.server("start")
    assert start.returncode == 0, start.stdout
    pid = int(kit.pid_file.read_text())
    assert start.stdout.splitlines() == [
        f"Removed a stale pid file ({kit.pid_file}): its server is gone.",
        f"Prefect server running (pid {pid}): http://127.0.0.1:{kit.port}  (log: {kit.home}/server.log)",
    ]
    status, runs = api(kit.port, "POST", "/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
    assert status == 200 and [r["state_type"] for r in runs] == ["COMPLETED"]
    assert_quiet(run)
    assert_quiet((kit.home / "temporary-server.log").read_text())
    assert_quiet((kit.home / "server.log").read_text())


def test_a_temporary_server_that_cannot_start_is_one_line_naming_why(built_kit):
    kit = built_kit
    before = kit.repo.read("dvc.lock")
    bad = kit.repo.py("scripts/flow_dvc.py", check=False,
                      env=dict(kit.repo.env, PREFECT_SERVER_DATABASE_CONNECTION_URL="sqlite+aiosqlite:////no/such/dir/x.db"))
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[-1] == (
        "error: Prefect's temporary server stopped while starting: sqlalchemy.exc.OperationalError: "
        f"(sqlite3.OperationalError) unable to open database file (its log: {kit.home}/temporary-server.log)")
    assert servers_in(kit.repo.path) == [] and kit.repo.read("dvc.lock") == before


def test_client_and_server_agree_on_the_port_and_the_run_is_on_the_server(built_repo, prefect_server):
    run = built_repo.py("scripts/flow_dvc.py", "--no-show-metrics").stdout
    port, run_id = view_at(run)
    assert port == int(prefect_server["PREFECT_SERVER_API_PORT"])
    assert "No Prefect server" not in run
    status, flow_run = api(port, "GET", f"/flow_runs/{run_id}")
    assert status == 200 and flow_run["name"] == flow_run_name(run)
    assert flow_run["state_type"] == "COMPLETED"
    _, tasks = api(port, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    assert sorted(t["name"].rsplit("-", 1)[0] for t in tasks) == ["check inputs", "dvc repro", "metrics summary",
                                                                   "pipeline plots"]
    # No temporary server ran for this home: it has no database of its own.
    assert not (Path(built_repo.env["PREFECT_HOME"]) / "prefect.db").exists()
    assert_quiet(run)
    assert_quiet((Path(prefect_server["PREFECT_HOME"]) / "server.log").read_text())


def make(kit: Kit, *args: str) -> subprocess.CompletedProcess:
    return kit.repo.run(*MAKE, f"PREFECT_PORT={kit.port}", *args, check=False)


def test_prefect_auth_guards_the_api_and_the_kit_still_runs(built_kit):
    kit, auth = built_kit, "kit:s3cret"
    start = make(kit, "prefect-start", f"PREFECT_AUTH={auth}")
    assert start.returncode == 0, start.stdout
    assert api(kit.port, "GET", "/health") == (200, True)  # what the kit's probe calls
    assert api(kit.port, "POST", "/flow_runs/filter", {})[0] == 401
    assert api(kit.port, "GET", "/admin/version")[0] == 401
    assert api(kit.port, "GET", "/admin/version", auth=auth) == (200, "3.9.1")

    run = make(kit, "run-dvc", "SHOW_METRICS=0", f"PREFECT_AUTH={auth}")
    assert run.returncode == 0, run.stdout
    port, run_id = view_at(run.stdout)
    assert port == kit.port
    status, flow_run = api(kit.port, "GET", f"/flow_runs/{run_id}", auth=auth)
    assert status == 200 and flow_run["state_type"] == "COMPLETED"

    doctor = make(kit, "doctor")  # this shell forgot the credentials
    assert doctor.returncode != 0
    assert "problem: it refuses this shell's credentials (401): pass the PREFECT_AUTH=user:pass" in doctor.stdout
    denied = make(kit, "run-dvc", "SHOW_METRICS=0")  # and a run without them: one line, not a 401 traceback
    assert denied.returncode != 0
    assert "asks for credentials that this run does not have or that it refuses" in denied.stdout
    assert "Traceback" not in denied.stdout
    assert make(kit, "prefect-stop", f"PREFECT_AUTH={auth}").returncode == 0
    assert port_is_free(kit.port)
    assert_quiet(run.stdout)


def test_doctor_reports_settings_and_sources_server_data_and_dvc_status(built_repo, prefect_server):
    home = Path(built_repo.env["PREFECT_HOME"])
    port = prefect_server["PREFECT_SERVER_API_PORT"]
    with open(built_repo.path / "data/raw/iris.csv", "a") as f:  # a changed data file
        f.write("5.0,3.0,1.5,0.2,setosa\n")
    doctor = built_repo.py("scripts/doctor.py", check=False)
    out = doctor.stdout
    settings = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^  (\S+(?: \S+)?) +(\S+) +(.+)$", out, flags=re.M)
    }
    assert settings["PREFECT_HOME"] == (str(home), "env")
    assert settings["PREFECT_SERVER_API_PORT"] == (port, "env")
    assert settings["PREFECT_SERVER_API_HOST"] == ("127.0.0.1", "prefect.toml")
    assert settings["PREFECT_SERVER_ANALYTICS_ENABLED"] == ("False", "prefect.toml")
    assert settings["dvc core.analytics"] == ("false", ".dvc/config")
    assert settings["DO_NOT_TRACK"][0] == "1" and settings["DVC_NO_ANALYTICS"][0] == "1"
    lines = dict(re.findall(r"^(server|database|versions|data|dvc status) +(.+)$", out, flags=re.M))
    # The session's server answers on this port but keeps its database in another home: that is
    # where these runs would land, and doctor says so.
    assert lines["server"].startswith(f"up at http://127.0.0.1:{port} (not started by the kit")
    assert lines["server"].endswith("Prefect 3.9.1")
    assert f"problem: it serves another Prefect home, {Path(prefect_server['PREFECT_HOME']).resolve()}" in out
    assert lines["database"].startswith(f"{home.resolve()}/prefect.db")
    assert re.fullmatch(r"prefect 3\.9\.1, dvc \d+\.\d+\.\d+, python 3\.\d+\.\d+", lines["versions"])
    assert re.fullmatch(r"problem: data/raw/iris\.csv has md5 [0-9a-f]{32}, not the "
                        r"013d0da08d6506664ce640459139176b recorded in data/raw/iris\.csv\.dvc", lines["data"])
    assert re.search(r"modified: +data/raw/iris\.csv", out)  # from `dvc status`
    assert out.rstrip().endswith("2 problem(s) above.") and doctor.returncode == 1
