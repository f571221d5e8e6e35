"""Fixtures: every pipeline test works in its own temporary copy of the kit (its own git and DVC
repo, DVC site cache and Prefect home), and all of them share one Prefect server started for the
session on a free port with a temporary home. Nothing touches the working tree, `~`, or a server
a user started."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kit_copy import ROOT, copy_kit  # noqa: F401 (the tests import ROOT from here)

PY = sys.executable
VENV = Path(PY).parent.parent
# `make` in a copy of the kit, with this interpreter's venv; `-o` keeps make from ever rebuilding it.
MAKE = ["make", "-s", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}"]
RUN_TIMEOUT = 300


VIEW_AT = re.compile(r"View at http://127\.0\.0\.1:(\d+)/runs/flow-run/([0-9a-f-]{36})")


def api(port: int | str, method: str, path: str, body: object = None, auth: str | None = None):
    """Call the server's REST API; returns (HTTP status, decoded JSON or None)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def view_at(output: str) -> tuple[int, str]:
    """The port and flow run id of the run's "View at" link."""
    match = VIEW_AT.search(output)
    assert match, f"no 'View at' link in:\n{output}"
    return int(match.group(1)), match.group(2)


def upstream(port: int | str, run_id: str) -> dict[str, set[str]]:
    """Each task of a flow run (by its name without the run suffix) and the tasks it waits for,
    as the UI's graph draws them: from the task runs' inputs that the API records."""
    _, tasks = api(port, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    names = {t["id"]: t["name"].rsplit("-", 1)[0] for t in tasks}
    return {
        names[t["id"]]: {names[i["id"]] for inputs in t["task_inputs"].values() for i in inputs
                         if i.get("input_type") == "task_run"}
        for t in tasks
    }


def flow_run_name(output: str) -> str:
    match = re.search(r"Beginning flow run '([\w-]+)'", output)
    assert match, output
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kit_env(home: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment a user's shell would have, with the kit's Prefect home and port overridden
    the way prefect.toml allows (environment variables), and nothing leaking in from ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DVC_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_PORT=str(port),
        PATH=f"{Path(PY).parent}{os.pathsep}{env['PATH']}",
        HOME=str(home.parent / "user-home"),  # a stray write to ~ lands in the test's folder
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
        COLUMNS="200",  # Prefect's console handler wraps long lines at the terminal's width
        DVC_NO_ANALYTICS="1",  # offline: the DVC commands a test runs itself, in repos not the kit's
        **extra,
    )
    return env


@dataclass
class Repo:
    """A temporary copy of the kit: its own git + DVC repository."""

    path: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = RUN_TIMEOUT, **kw) -> subprocess.CompletedProcess:
        """Run a command in the repo; stdout and stderr are merged, as a user sees them."""
        proc = subprocess.run(
            args, cwd=kw.pop("cwd", self.path), env=kw.pop("env", self.env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=timeout, **kw,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}")
        return proc

    def py(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(PY, *args, **kw)

    def read(self, rel: str) -> bytes:
        return (self.path / rel).read_bytes()

    def set_param(self, dotted: str, value: object) -> None:
        params = yaml.safe_load((self.path / "params.yaml").read_text())
        section, key = dotted.split(".")
        params[section][key] = value
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def tracked_changes(self) -> str:
        return self.run("git", "status", "--porcelain", "--untracked-files=no").stdout


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> dict[str, str]:
    """One Prefect server for the whole session: temporary home, free port, started the kit's way
    (scripts/server.py, reading the copy's prefect.toml with the home and port overridden)."""
    base = tmp_path_factory.mktemp("server")
    copy_kit(base / "kit")
    env = kit_env(base / "prefect-home", free_port())
    start = subprocess.run(
        [PY, "scripts/server.py", "start"], cwd=base / "kit", env=env,
        capture_output=True, text=True, timeout=180,
    )
    assert start.returncode == 0, start.stdout + start.stderr
    yield env
    subprocess.run([PY, "scripts/server.py", "stop"], cwd=base / "kit", env=env, timeout=60)


@pytest.fixture(scope="session")
def template(tmp_path_factory, prefect_server) -> Path:
    """A fresh clone with its data restored (as `make data` does), committed: copied per test."""
    path = tmp_path_factory.mktemp("template") / "kit"
    copy_kit(path)
    repo = Repo(path, dict(prefect_server))
    repo.py("-m", "dvc", "config", "--local", "core.site_cache_dir", str(path.parent / "dvc-site"))
    repo.run("git", "init", "-q", "-b", "main")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-q", "-m", "kit")
    repo.py("scripts/get_data.py")
    return path


@pytest.fixture(scope="session")
def built_template(tmp_path_factory, template, prefect_server) -> Path:
    """The template after one `dvc repro`: every stage up to date, outputs in DVC's cache."""
    path = tmp_path_factory.mktemp("built") / "kit"
    shutil.copytree(template, path, symlinks=True)
    Repo(path, dict(prefect_server)).py("-m", "dvc", "repro", "-q")
    return path


def copy_repo(tmp_path: Path, source: Path, server_env: dict[str, str]) -> Repo:
    """A copy of `source` in tmp_path/kit, with its own DVC site cache and Prefect home."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "kit"
    shutil.copytree(source, path, symlinks=True)
    # DVC writes a per-repo cache under /var/tmp/dvc unless told otherwise: keep it in the test.
    env = dict(server_env, PREFECT_HOME=str(tmp_path / "prefect-home"))
    r = Repo(path, env)
    r.py("-m", "dvc", "config", "--local", "core.site_cache_dir", str(tmp_path / "dvc-site"))
    return r


@pytest.fixture
def repo(tmp_path, template, prefect_server) -> Repo:
    """A fresh clone with its data: nothing built yet."""
    return copy_repo(tmp_path, template, prefect_server)


@pytest.fixture
def built_repo(tmp_path, built_template, prefect_server) -> Repo:
    """A clone where the pipeline has run: `dvc repro` has nothing to do."""
    return copy_repo(tmp_path, built_template, prefect_server)


@pytest.fixture
def make_repo(tmp_path, template, built_template, prefect_server):
    """More than one copy in a test: make_repo("a"), make_repo("b", built=True)."""

    def make(name: str, built: bool = False) -> Repo:
        return copy_repo(tmp_path / name, built_template if built else template, prefect_server)

    return make
