"""Beyond one laptop, with every part real and local: a Prefect server on a PostgreSQL that the test
starts as a non-root user, a bare git repository as `origin`, a folder as the DVC remote, a
process worker started with `make worker` in its own clone, `make deploy`, `make serve`, and an HTTP
receiver for the automations' webhook. Everything runs on free ports in this module's temporary
folder and is stopped at its end.

The tests share one server, worker and database (a server start costs 8-10 s here) and run in
file order: the last one restarts the server.
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import MAKE, PY, ROOT, Repo, api, copy_kit, free_port, kit_env
from kit.processes import stop_group

VENV = Path(PY).parent.parent  # where `make deploy` finds `prefect`, as it prints it
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
CRASH_AFTER = 10  # the least Prefect allows; production: 90 (the Makefile's CRASH_AFTER)
HEARTBEAT = 30  # prefect.toml, the least Prefect allows
DB_PASSWORD = "s3cret-pw"


# --- the parts ----------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL (Debian's `postgresql` package; .ci/run installs it), else one
    on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """A throwaway PostgreSQL: its own data folder, a free port, password auth, run as a non-root
    user (PostgreSQL refuses root), in the foreground as our child so that we stop it."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kit-pg-"))  # under /tmp: every user may enter it
        self.url = f"postgresql+asyncpg://prefect:{DB_PASSWORD}@127.0.0.1:{self.port}/prefect"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self.as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        os.chmod(self.dir, 0o700)
        self.env = dict(os.environ, HOME=str(self.dir), PGPASSWORD=DB_PASSWORD)
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """initdb, start, create the database; return the seconds it took."""
        start = time.monotonic()
        password = self.dir / "password"
        password.write_text(DB_PASSWORD + "\n")
        shutil.chown(password, *self._owner())
        self._run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "prefect", "-E", "UTF8",
                  "--auth=scram-sha-256", f"--pwfile={password}", "--locale=C.UTF-8", "--no-sync")
        self.proc = subprocess.Popen(
            [*self.as_user, str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port),
             "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            cwd=self.dir, env=self.env, stdout=open(self.dir / "log", "wb"), stderr=subprocess.STDOUT,
        )
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            assert self.proc.poll() is None and time.monotonic() - start < 60, (self.dir / "log").read_text()
            time.sleep(0.1)
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "prefect", "prefect")
        return time.monotonic() - start

    def psql(self, sql: str) -> list[str]:
        out = self._run(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "prefect",
                        "-d", "prefect", "-At", "-c", sql)
        return out.splitlines()

    def stop(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _owner(self) -> tuple[int, int]:
        st = self.dir.stat()
        return st.st_uid, st.st_gid

    def _run(self, *args: str) -> str:
        # stdin closed: createdb and psql would otherwise wait for a password on a terminal.
        proc = subprocess.run([*self.as_user, *args], cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout


class Receiver:
    """A local HTTP endpoint that keeps what is POSTed to it, with the time it arrived."""

    def __init__(self):
        self.posts: list[tuple[float, dict]] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((time.time(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, run_id: str, timeout: float) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received, body in self.posts:
                if body["flow_run_id"] == run_id:
                    return received, body
            time.sleep(0.1)
        raise AssertionError(f"no POST for flow run {run_id} within {timeout} s; got {self.posts}")


@dataclass
class Team:
    base: Path
    env: dict[str, str]
    port: int
    origin: Path
    dvc_remote: Path
    dev: Path  # the laptop that deploys: a clone of origin
    receiver: Receiver
    pg: Postgres | None
    worker: subprocess.Popen | None = None
    deploy_output: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def make(self, cwd: Path, *args: str, check: bool = True, timeout: float = 180) -> str:
        """`make` with this interpreter's venv (`-o` keeps make from rebuilding it) and the team's
        server; stdout and stderr merged, as a user sees them."""
        db = [f"PREFECT_DB_URL={self.pg.url}"] if self.pg else []
        proc = subprocess.run(
            [*MAKE, f"PREFECT_PORT={self.port}", *db, *args],
            cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
        )
        assert not check or proc.returncode == 0, f"make {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}"
        return proc.stdout

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(["git", *args], cwd=cwd or self.base, env=self.env, capture_output=True,
                              text=True, check=True).stdout

    def api(self, method: str, path: str, body: object = None):
        status, data = api(self.port, method, path, body)
        assert status in (200, 201), f"{method} {path}: {status}"
        return data

    def deployment(self, name: str) -> dict:
        found = [d for d in self.api("POST", "/deployments/filter", {}) if d["name"] == name]
        assert len(found) == 1, [d["name"] for d in self.api("POST", "/deployments/filter", {})]
        return found[0]

    def start_worker(self) -> None:
        # In a clone of its own, as on another machine; polling every second rather than every 10 s.
        machine = self.base / "worker-machine"
        if not machine.exists():
            self.git("clone", "-q", str(self.origin), str(machine))
        log = self.base / "worker.log"
        log.write_text("")
        self.worker = subprocess.Popen(
            [*MAKE, f"PREFECT_PORT={self.port}", "worker"],
            cwd=machine, env=dict(self.env, PREFECT_WORKER_QUERY_SECONDS="1"),
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while "started!" not in log.read_text():  # Prefect's "Worker '...' started!"
            assert self.worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            stop_group(self.worker.pid, timeout=30)  # SIGTERM: the worker stops as on Ctrl-C


def wait_for_run(team: Team, run_id: str, timeout: float = 180, until=lambda r: r["state_type"] in FINAL) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = team.api("GET", f"/flow_runs/{run_id}")
        if until(run):
            return run
        assert time.monotonic() < deadline, f"flow run {run_id} still {run['state_name']} after {timeout} s"
        time.sleep(0.25)


def run_logs(team: Team, run_id: str) -> list[str]:
    """A finished run's log lines, once they have all arrived: the run's process sends them after
    its final state, up to its own last line ("Finished in state ...")."""
    deadline = time.monotonic() + 30
    while True:
        logs = team.api("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}},
                                                 "sort": "TIMESTAMP_ASC", "limit": 200})
        if any(e["task_run_id"] is None and e["message"].startswith("Finished in state") for e in logs):
            return [entry["message"] for entry in logs]
        assert time.monotonic() < deadline, [entry["message"] for entry in logs]
        time.sleep(0.25)


def trigger(team: Team, deployment: str) -> dict:
    """What the UI's Run button and `prefect deployment run` do."""
    return team.api("POST", f"/deployments/{team.deployment(deployment)['id']}/create_flow_run", {})


def automation_ids(team: Team) -> dict[str, str]:
    return {a["name"]: a["id"] for a in team.api("POST", "/automations/filter", {})}


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    base = tmp_path_factory.mktemp("team")
    bin_dir = postgres_bin()
    pg = Postgres(bin_dir) if bin_dir else None
    env = kit_env(base / "prefect-home", free_port(), DVC_SITE_CACHE_DIR=str(base / "dvc-site"),
                  TMPDIR=str(base / "tmp"))  # the worker's per-run clones land there, and go with it
    (base / "tmp").mkdir()
    t = Team(base=base, env=env, port=int(env["PREFECT_SERVER_API_PORT"]), origin=base / "origin.git",
             dvc_remote=base / "dvc-remote", dev=base / "dev", receiver=Receiver(), pg=pg)
    try:
        if pg:
            t.timings["PostgreSQL start (initdb, start, createdb)"] = pg.start()
        # The team's repository: the kit with a folder as its DVC remote (an absolute path: each run
        # clones into another folder), pushed to a bare `origin`; the laptop is a clone of it.
        kit = base / "kit"
        copy_kit(kit)
        t.git("init", "-q", "-b", "main", cwd=kit)
        subprocess.run([PY, "-m", "dvc", "remote", "add", "-q", "-d", "team", str(t.dvc_remote)], cwd=kit,
                       env=env, check=True)
        t.git("add", "-A", cwd=kit)
        t.git("commit", "-q", "-m", "kit", cwd=kit)
        t.git("init", "-q", "--bare", "-b", "main", str(t.origin))
        t.git("push", "-q", str(t.origin), "main", cwd=kit)
        t.git("clone", "-q", str(t.origin), str(t.dev))

        start = time.monotonic()
        t.make(t.dev, "prefect-start")
        t.timings["server start on " + ("PostgreSQL" if pg else "SQLite")] = time.monotonic() - start
        start = time.monotonic()
        t.deploy_output = t.make(t.dev, "deploy", f"NOTIFY_URL={t.receiver.url}")
        t.timings["make deploy"] = time.monotonic() - start
        t.start_worker()
        yield t
    finally:
        t.stop_worker()
        subprocess.run([*MAKE, f"PREFECT_PORT={t.port}", "prefect-stop"], cwd=t.dev, env=env,
                       capture_output=True, timeout=60)
        t.receiver.server.shutdown()
        if pg:
            pg.stop()
        print("\n" + "\n".join(f"  {what}: {seconds:.1f} s" for what, seconds in t.timings.items()))


@pytest.fixture(scope="module")
def deployed_run(team) -> dict:
    """One run of the `dvc-repro` deployment, triggered through the API, run by the worker."""
    start = time.monotonic()
    run = wait_for_run(team, trigger(team, "dvc-repro")["id"])
    team.timings["trigger to completed run on the worker"] = time.monotonic() - start
    return run


# --- tests --------------------------------------------------------------------------------------


def test_make_deploy_registers_the_deployment_from_git_and_says_how_to_run_it(team):
    out = team.deploy_output
    assert "work pool kit-pool: created (process)" in out
    assert f"deployment 'Deployed pipeline/dvc-repro': pool kit-pool, clones {team.origin} at main, schedule: none" in out
    assert f"  run it: {VENV}/bin/prefect deployment run 'Deployed pipeline/dvc-repro'" in out
    assert "automation kit-notify-failed: created" in out and "automation kit-crash-zombies: created" in out
    deployment = team.deployment("dvc-repro")
    clone, workdir = deployment["pull_steps"]
    assert clone["prefect.deployments.steps.git_clone"] == {"id": "clone", "repository": str(team.origin),
                                                            "branch": "main"}
    assert workdir["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ clone.directory }}"
    assert deployment["tags"] == ["kit"] and deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"


def test_a_deployment_run_clones_pulls_runs_and_pushes_its_results(team, deployed_run):
    run = deployed_run
    assert run["state_type"] == "COMPLETED", run["state"]
    logs = run_logs(team, run["id"])
    text = "\n".join(logs)
    # A fresh clone in a temporary folder of the worker's, never the folder the worker started in.
    cwd = next(line.removeprefix("CWD: ") for line in logs if line.startswith("CWD: "))
    assert cwd.startswith(f"{team.base}/tmp/") and cwd.endswith("prefect/origin-main")
    # The DVC remote was new and empty: the raw data came as `make data` restores it.
    assert "Pulling from the DVC remote 'team'" in text and "rebuilt from scikit-learn's copy of iris" in text
    assert "Running stage 'prepare'" in text and "Running stage 'train'" in text

    name = f"{run['name']}-{run['id'][:8]}"
    assert f"DVC experiment: {name} (baseline " in text
    refs = team.git("--git-dir", str(team.origin), "for-each-ref", "refs/exps", "--format=%(refname)%09%(contents)")
    ref, message = next((r, m) for r, m in (line.split("\t", 1) for line in refs.splitlines() if "\t" in line)
                        if r.endswith("/" + name))
    assert message.startswith(f"Prefect flow run {run['id']} ({run['name']}, Deployed pipeline)")
    artifact = team.api("POST", "/artifacts/filter", {"artifacts": {"key": {"any_": ["dvc-experiment"]}},
                                                      "sort": "CREATED_DESC"})[0]
    assert artifact["flow_run_id"] == run["id"] and f"dvc exp pull origin {name}" in artifact["data"]
    assert list((team.dvc_remote / "files" / "md5").rglob("*"))  # `dvc push` filled the remote


def test_its_experiment_pulled_on_another_clone_gives_the_worker_s_outputs(team, deployed_run):
    run = deployed_run
    name = f"{run['name']}-{run['id'][:8]}"
    metrics = next(line for line in run_logs(team, run["id"]) if line.startswith("Metrics: "))
    laptop = Repo(team.base / "laptop", team.env)
    team.git("clone", "-q", str(team.origin), str(laptop.path))
    laptop.py("-m", "dvc", "exp", "pull", "origin", name)
    laptop.py("-m", "dvc", "exp", "apply", name)
    laptop.py("-m", "dvc", "pull")
    assert laptop.py("-m", "dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    assert metrics == f"Metrics: {json.dumps(json.loads(laptop.read('reports/metrics.json')))}"
    assert (laptop.path / "models" / "model.joblib").is_file() and (laptop.path / "data/raw/iris.csv").is_file()


def test_make_serve_runs_on_its_schedule_and_from_the_run_button_until_ctrl_c(team):
    serve = subprocess.Popen(
        [*MAKE, f"PREFECT_PORT={team.port}", "serve", "SCHEDULE=5"],
        cwd=team.dev, env=team.env, stdout=open(team.base / "serve.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log = lambda: (team.base / "serve.log").read_text()  # noqa: E731
    try:
        deadline = time.monotonic() + 60
        while not all(any(d["name"] == n for d in team.api("POST", "/deployments/filter", {}))
                      for n in ("run-dvc", "run-stages", "run-dvc-stages")):
            assert serve.poll() is None and time.monotonic() < deadline, log()
            time.sleep(0.5)
        clicked = wait_for_run(team, trigger(team, "run-stages")["id"], timeout=120)
        assert clicked["state_type"] == "COMPLETED", clicked["state"]
        finished = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}},
                    "deployments": {"id": {"any_": [team.deployment("run-dvc")["id"]]}}}
        deadline = time.monotonic() + 120
        while not (done := [r for r in team.api("POST", "/flow_runs/filter", finished) if r["auto_scheduled"]]):
            assert time.monotonic() < deadline, "no scheduled run finished"
            time.sleep(0.5)
        scheduled = done[0]
        assert scheduled["state_type"] == "COMPLETED", scheduled["state"]
        assert "kit" in scheduled["tags"] and scheduled["work_pool_name"] is None  # run by serve, not a worker
    finally:
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C
        serve.wait(timeout=60)
    assert team.deployment("run-dvc")["paused"], log()  # serve pauses what it served when it stops


def test_a_failed_kit_run_posts_to_the_webhook(team):
    """A run that fails on its own (no data here): the server's automation posts, not the run."""
    clone = team.base / "no-data"
    team.git("clone", "-q", str(team.origin), str(clone))
    proc = subprocess.run([PY, "scripts/flow_dvc.py"], cwd=clone, env=team.env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_id = re.search(r"/runs/flow-run/([0-9a-f-]{36})", proc.stdout + proc.stderr).group(1)
    received, body = team.receiver.wait_for(run_id, timeout=30)
    failed_at = team.api("GET", f"/flow_runs/{run_id}")["state"]["timestamp"]
    team.timings["Failed to webhook POST"] = received - _epoch(failed_at)
    assert body["state"] == "Failed" and body["flow"] == "Prefect operates DVC pipeline"
    assert "iris.csv: file not found" in body["message"]
    assert body["url"] == f"http://127.0.0.1:{team.port}/runs/flow-run/{run_id}"


def test_a_sigkilled_worker_s_run_is_marked_crashed_and_posted(team, deployed_run):
    """The worker dies with its run (deployed_run, which needs it, is done first). Before that,
    `make deploy` again, with a schedule and a shorter CRASH_AFTER: everything updated in place."""
    before = (automation_ids(team), team.deployment("dvc-repro")["id"])
    out = team.make(team.dev, "deploy", f"CRASH_AFTER={CRASH_AFTER}", "SCHEDULE=0 0 1 1 *")
    assert "automation kit-crash-zombies: updated" in out and "work pool kit-pool: exists" in out
    assert "automation kit-notify-failed: left as it is (no NOTIFY_URL given)" in out
    assert "clones {} at main, schedule: cron '0 0 1 1 *' (UTC)".format(team.origin) in out
    assert (automation_ids(team), team.deployment("dvc-repro")["id"]) == before
    blocks = team.api("POST", "/block_documents/filter", {"block_types": {"slug": {"any_": ["webhook"]}}})
    assert [b["name"] for b in blocks] == ["kit-notify"]

    run = trigger(team, "dvc-repro")
    running = wait_for_run(team, run["id"], timeout=120,
                           until=lambda r: r["state_type"] == "RUNNING" and r["infrastructure_pid"])
    # The worker and the run's process (its own session: DVC and the stage with it) die at once.
    os.killpg(team.worker.pid, signal.SIGKILL)
    os.killpg(int(running["infrastructure_pid"]), signal.SIGKILL)
    killed = time.time()
    team.worker.wait()
    crashed = wait_for_run(team, run["id"], timeout=HEARTBEAT + CRASH_AFTER + 30)
    seen = time.time()
    assert crashed["state_type"] == "CRASHED" and "No heartbeat" in crashed["state"]["message"]
    received, body = team.receiver.wait_for(run["id"], timeout=30)
    team.timings[f"SIGKILL to Crashed (CRASH_AFTER={CRASH_AFTER})"] = _epoch(crashed["state"]["timestamp"]) - killed
    team.timings["Crashed to webhook POST"] = received - _epoch(crashed["state"]["timestamp"])
    assert body["state"] == "Crashed" and body["deployment"] == "dvc-repro"
    assert seen - killed < HEARTBEAT + CRASH_AFTER + 10


@pytest.mark.skipif(postgres_bin() is None, reason="no PostgreSQL here: .ci/run installs Debian's postgresql")
def test_postgresql_holds_the_runs_and_deployments_across_a_server_restart(team, deployed_run):
    url = f"postgresql+asyncpg://127.0.0.1:{team.pg.port}/prefect"
    status = team.make(team.dev, "prefect-status")
    assert re.search(rf"^database +{re.escape(url)}$", status, flags=re.M) and DB_PASSWORD not in status
    doctor = team.make(team.dev, "doctor", check=False)
    assert re.search(rf"^database +{re.escape(url)}$", doctor, flags=re.M) and DB_PASSWORD not in doctor

    worker_runs = team.pg.psql(
        "select f.id from flow_run f join work_queue q on q.id = f.work_queue_id "
        "join work_pool p on p.id = q.work_pool_id where p.name = 'kit-pool' and f.state_type = 'COMPLETED'")
    assert deployed_run["id"] in worker_runs
    deployments = set(team.pg.psql("select name from deployment"))
    assert deployments == {"dvc-repro", "run-dvc", "run-stages", "run-dvc-stages"}
    runs_before = team.api("POST", "/flow_runs/filter", {})

    team.make(team.dev, "prefect-stop")
    start = time.monotonic()
    team.make(team.dev, "prefect-start")
    team.timings["server restart on PostgreSQL"] = time.monotonic() - start
    runs_after = team.api("POST", "/flow_runs/filter", {})
    assert {(r["id"], r["state_type"]) for r in runs_after} == {(r["id"], r["state_type"]) for r in runs_before}
    assert {d["name"] for d in team.api("POST", "/deployments/filter", {})} == deployments


def test_the_commands_that_need_a_server_say_so_in_one_line(team):
    env = dict(team.env, PREFECT_SERVER_API_PORT=str(free_port()))
    for script, what in (("deploy.py", "make deploy"), ("worker.py", "make worker")):  # serve.py: the same call
        proc = subprocess.run([PY, f"scripts/{script}"], cwd=team.dev, env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.startswith(f"error: {what} needs a running Prefect server, and none answers at "
                                      "http://127.0.0.1:") and proc.stderr.count("\n") == 1, proc.stderr


def test_prefect_yaml_deploys_the_kit_s_flow_with_its_tag():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    from kit.project import RUN_TAG

    for deployment in config["deployments"]:
        path, function = deployment["entrypoint"].split(":")
        assert f"def {function}(" in (ROOT / path).read_text()
        assert RUN_TAG in deployment["tags"]  # the automations act on it
        assert deployment["schedules"] == []  # SCHEDULE sets it (scripts/deploy.py)


def test_schedule_knob():
    from kit import deployments

    assert deployments.schedule("") == {}
    assert deployments.schedule("3600") == {"interval": 3600}
    assert deployments.schedule("0 3 * * *") == {"cron": "0 3 * * *"}
    with pytest.raises(SystemExit, match=r"SCHEDULE='hourly' is neither a number of seconds nor a cron string"):
        deployments.schedule("hourly")


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
