"""What the benchmarks that start their own Prefect server share: a temporary copy of the kit with
its own server on a free port, and a command run in it, timed, with the peak memory of its
process tree and of each process in it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from kit_copy import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from kit.processes import terminate_tree  # noqa: E402

PY = str(ROOT / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """A command, timed, with the peak resident memory of its process tree (the sum over its
    processes at each moment) and of each process (by its command line)."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True):
        self.started = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.peak_mb = 0.0
        self.process_peaks: dict[int, tuple[str, float]] = {}  # pid -> (command line, peak MB)
        watcher = threading.Thread(target=self._watch, args=(proc.pid,), daemon=True)
        watcher.start()
        try:
            self.output = proc.communicate()[0]
        except BaseException:  # the benchmark stopped: stop the command and what it started
            terminate_tree(proc.pid)
            proc.wait(timeout=10)
            raise
        self.seconds = time.perf_counter() - start
        self.ended = time.time()
        self.returncode = proc.returncode
        watcher.join()
        if check and proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{self.output[-3000:]}")

    def _watch(self, pid: int) -> None:
        try:
            root = psutil.Process(pid)
            while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
                total = 0.0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        mb = p.memory_info().rss / 2**20
                        line = " ".join(p.cmdline())
                    except psutil.Error:
                        continue
                    total += mb
                    if mb > self.process_peaks.get(p.pid, ("", 0.0))[1]:
                        self.process_peaks[p.pid] = (line, mb)
                self.peak_mb = max(self.peak_mb, total)
                time.sleep(0.05)
        except psutil.Error:
            pass

    def peak_of(self, part: str) -> float:
        """The highest peak of the processes whose command line contains `part`."""
        return max((mb for line, mb in self.process_peaks.values() if part in line), default=0.0)


class Kit:
    """A temporary copy of the kit (committed, sharing .venv), its environment and its server."""

    def __init__(self, path: Path):
        from kit_copy import new_repo

        self.path = path
        self.home = path.parent / "prefect-home"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "PREFECT_", "DVC_"))}
        self.env = dict(env, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}", PREFECT_HOME=str(self.home),
                        PREFECT_SERVER_API_PORT=str(self.port), DO_NOT_TRACK="1",
                        DVC_NO_ANALYTICS="1")  # the diamond's bare `dvc repro` as the kit runs DVC
        new_repo(path)
        self.dvc("config", "--local", "core.site_cache_dir", str(path.parent / "dvc-site"))

    def run(self, *cmd: str, cwd: Path | None = None) -> Run:
        return Run(list(cmd), cwd or self.path, self.env)

    def make(self, *args: str) -> Run:
        return self.run("make", "-s", "--no-print-directory", *args)

    def dvc(self, *args: str) -> str:
        return self.run(PY, "-m", "dvc", *args).output

    def start_server(self) -> None:
        # The server runs in its own session: only the benchmark's `finally` stops it, and SIGTERM
        # would skip that (it leaked a server when a benchmark was stopped).
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        self.run(PY, "scripts/server.py", "start")

    def stop_server(self) -> None:
        self.run(PY, "scripts/server.py", "stop")

    def api(self, method: str, path: str, body: object = None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)


def set_random_state(repo: Path, value: int) -> None:
    """A split.random_state not seen before: every stage must run."""
    text = (repo / "params.yaml").read_text().splitlines()
    text = [f"  random_state: {value}" if line.strip().startswith("random_state:") else line for line in text]
    (repo / "params.yaml").write_text("\n".join(text) + "\n")


def grid(path: Path, c_values: list[float]) -> list[tuple[float, bool]]:
    """Write a sweep file of these train.C values x both values of preprocess.standardize."""
    path.write_text(f"objective: accuracy\ngrid:\n  train.C: {c_values}\n  preprocess.standardize: [true, false]\n")
    return [(c, standardize) for c in c_values for standardize in (True, False)]


def dvc_queue(kit: Kit, points: list[tuple[float, bool]], jobs: int) -> Run:
    """`dvc exp run --queue` for each point, then `dvc queue start -j JOBS`, waited for: one Run
    covering all of it (its peak is the queue's workers' and DVC's)."""
    lines = [f"{PY} -m dvc exp run --queue -q -S train.C={c} -S preprocess.standardize={str(s).lower()} "
             f"-n dvcq-C={c}-standardize={str(s).lower()}" for c, s in points]
    script = "\n".join([
        "set -e", *lines, f"{PY} -m dvc queue start -j {jobs} >/dev/null",
        # Until every experiment has ended: `dvc queue status` can show none running for a moment
        # while a worker moves to the next one.
        f"while [ $({PY} -m dvc queue status | grep -cE 'Success|Failed') -lt {len(points)} ]; do sleep 2; done",
        f"{PY} -m dvc queue status", f"{PY} -m dvc queue stop >/dev/null"])
    run = kit.run("sh", "-c", script)
    done = [line for line in run.output.splitlines() if "Success" in line]
    if len(done) != len(points):
        sys.exit(f"dvc queue: {len(done)} of {len(points)} experiments succeeded:\n{run.output}")
    return run
