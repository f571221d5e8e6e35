"""Time parameter sweeps side by side, in one run, from the same state, with a Prefect server up.

    .venv/bin/python benchmarks/bench_sweep.py       (make bench-sweep)

Works in a temporary copy of the kit (sharing .venv), with a Prefect server of its own on a free
port, so the working tree and any server you run are untouched. Every sweep starts with an empty
trial cache, so every trial runs. The cases:

1. 16 trials (8 train.C x 2 preprocess.standardize), each recorded as a DVC experiment:
   `make sweep` (the median of 3 runs, after a warm-up sweep) against `dvc exp run --queue`
   (16 times) + `dvc queue start -j 2`, waited for (once: it takes minutes). Trials per second
   of each, and where the sweep's time goes, from Prefect's API.
2. Local sweeps (threads, one per CPU) of 16, 64 and 256 trials: trials per second, and the peak
   memory of the sweep's processes.
3. The same 64 trials on a 2-worker Dask cluster (make dask-start) against local: the ratio, and
   the cluster's fixed cost (its start, and its workers' first trials, which import the libraries).

Writes reports/bench-sweep.json and prints a table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from bench import PY, new_repo  # benchmarks/bench.py
from kit_copy import ROOT

C_RANGE = (-3, 3)  # train.C from 10**-3 to 10**3, log-spaced
DVC_JOBS = 2
SWEEP16_RUNS = 3  # `make sweep` of 16 trials is timed this many times (the median counts); DVC's queue once
# The same trials and recording as the sweep's, in one plain process, with no Prefect: what a
# trial costs warm, what the first one costs (pandas and scikit-learn imports), what recording
# one costs. Prints JSON. Run in the copy's scripts/ folder, where `kit` is importable as it is for
# a script there: python -c FLOOR SWEEP_FILE
FLOOR = """
import dataclasses, json, sys, time
from pathlib import Path
from kit import project
project.enter()
from kit.dvc_yaml import pipeline_inputs, read_stages
from kit.sweep.experiments import Experiments
from kit.sweep.spec import load_sweep
from kit.sweep.trials import Pipeline, run_trial
root = Path(".").resolve()
stages = list(read_stages(root).values())
relative = tuple(dataclasses.replace(s, paths={k: v.relative_to(root) for k, v in s.paths.items()}) for s in stages)
pipeline = Pipeline(relative, {p: (root / p).read_bytes() for p in pipeline_inputs(stages)})
points = load_sweep(Path(sys.argv[1]), root / "params.yaml").points
t0 = time.perf_counter(); run_trial(points[0].params, pipeline); t1 = time.perf_counter()
results = [run_trial(p.params, pipeline) for p in points]; t2 = time.perf_counter()
experiments = Experiments(root); t3 = time.perf_counter()
for p, r in zip(points, results):
    experiments.record("floor-" + p.name, p.values, r.outputs, pipeline.inputs)
t4 = time.perf_counter()
print(json.dumps({"first_trial_s": t1 - t0, "trial_ms": 1000 * (t2 - t1) / len(points),
                  "record_ms": 1000 * (t4 - t3) / len(points)}))
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grid(path: Path, n_c: int) -> list[tuple[float, bool]]:
    """Write a sweep file of n_c values of train.C x both values of preprocess.standardize;
    return its points."""
    values = [float(f"{10 ** (C_RANGE[0] + (C_RANGE[1] - C_RANGE[0]) * i / (n_c - 1)):.3g}") for i in range(n_c)]
    assert len(set(values)) == n_c
    path.write_text(f"objective: accuracy\ngrid:\n  train.C: {values}\n  preprocess.standardize: [true, false]\n")
    return [(c, standardize) for c in values for standardize in (True, False)]


class Run:
    """A command, timed, with the peak resident memory of its process tree."""

    def __init__(self, cmd: list[str], repo: Path, env: dict[str, str]):
        self.started = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.peak_mb = 0.0
        watcher = threading.Thread(target=self._watch, args=(proc.pid,), daemon=True)
        watcher.start()
        self.output = proc.communicate()[0]
        self.seconds = time.perf_counter() - start
        self.ended = time.time()
        watcher.join()
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{self.output[-3000:]}")

    def _watch(self, pid: int) -> None:
        try:
            root = psutil.Process(pid)
            while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
                rss = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak_mb = max(self.peak_mb, rss / 2**20)
                time.sleep(0.05)
        except psutil.Error:
            pass


class Kit:
    """The temporary copy: its environment, its server, and how to run things in it."""

    def __init__(self, path: Path):
        self.path = path
        self.home = path.parent / "prefect-home"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "PREFECT_", "DVC_"))}
        self.env = dict(env, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}", PREFECT_HOME=str(self.home),
                        PREFECT_SERVER_API_PORT=str(self.port), DO_NOT_TRACK="1")

    def run(self, *cmd: str, cwd: Path | None = None) -> Run:
        return Run(list(cmd), cwd or self.path, self.env)

    def make(self, *args: str) -> Run:
        return self.run("make", "-s", "--no-print-directory", *args)

    def dvc(self, *args: str) -> str:
        return self.run(PY, "-m", "dvc", *args).output

    def sweep(self, *args: str) -> Run:
        """`make sweep`, with no trial cached: every trial runs."""
        shutil.rmtree(self.home / "storage", ignore_errors=True)
        return self.make("sweep", "SHOW_METRICS=0", *args)

    def api(self, method: str, path: str, body: object = None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)


def flow_run_id(output: str) -> str:
    line = next(line for line in output.splitlines() if "/runs/flow-run/" in line)
    return line.rsplit("/", 1)[1].strip()


def where_time_goes(kit: Kit, run: Run, trials: int, floor: dict[str, float]) -> dict[str, float]:
    """The sweep's process split into its fixed cost (before and after the flow run, from
    Prefect's API) and its flow run: the first trials' imports, the trials' compute and the
    recording (each as `floor` measured them, with no Prefect), and the rest: Prefect's task runs,
    and the threads waiting on one another (trials this small hold Python's GIL most of the time)."""
    run_id = flow_run_id(run.output)
    flow_run = kit.api("GET", f"/flow_runs/{run_id}")
    n_tasks = len(kit.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}}))
    body = flow_run["total_run_time"]
    started = _timestamp(flow_run["start_time"])
    imports = floor["first_trial_s"] - floor["trial_ms"] / 1000  # the threads' first trials, side by side
    compute = trials * floor["trial_ms"] / 1000
    recording = trials * floor["record_ms"] / 1000
    rest = body - imports - compute - recording
    return {
        "process_s": round(run.seconds, 2),
        "before_flow_s": round(started - run.started, 2),  # make data, interpreter, imports, server check
        "after_flow_s": round(run.ended - started - body, 2),  # Prefect's end of run, process exit
        "flow_body_s": round(body, 2),
        "first_trial_imports_s": round(imports, 2),
        "trial_compute_ms_each": round(floor["trial_ms"], 1),
        "recording_ms_each": round(floor["record_ms"], 1),
        "rest_s": round(rest, 2),
        "prefect_task_runs": n_tasks,
        "rest_ms_per_task_run": round(1000 * rest / n_tasks, 1),
    }


def _timestamp(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def dvc_queue(kit: Kit, points: list[tuple[float, bool]]) -> dict[str, float]:
    """`dvc exp run --queue` for each point, `dvc queue start -j 2`, and wait until all are done."""
    start = time.perf_counter()
    for c, standardize in points:
        flag = str(standardize).lower()
        kit.dvc("exp", "run", "--queue", "-S", f"train.C={c}", "-S", f"preprocess.standardize={flag}",
                "-n", f"dvcq-C={c}-standardize={flag}")
    queued = time.perf_counter() - start
    kit.dvc("queue", "start", "-j", str(DVC_JOBS))
    while True:
        status = kit.dvc("queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(2)
    seconds = time.perf_counter() - start
    kit.dvc("queue", "stop")
    done = [line for line in status.splitlines() if "Success" in line]
    if len(done) != len(points):
        sys.exit(f"dvc queue: {len(done)} of {len(points)} experiments succeeded:\n{status}")
    return {"trials": len(points), "seconds": round(seconds, 2), "queueing_s": round(queued, 2),
            "trials_per_s": round(len(points) / seconds, 3)}


def sweep_case(run: Run, trials: int) -> dict[str, float]:
    return {"trials": trials, "seconds": round(run.seconds, 2), "trials_per_s": round(trials / run.seconds, 2),
            "peak_mb": round(run.peak_mb)}


def main() -> int:
    report: dict[str, object] = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="kit-bench-sweep-") as tmp:
        kit = Kit(Path(tmp) / "kit")
        new_repo(kit.path)
        kit.dvc("config", "--local", "core.site_cache_dir", str(Path(tmp) / "dvc-site"))
        points = {name: grid(kit.path / f"{name}.yaml", n_c)
                  for n_c, name in ((2, "warmup"), (8, "sweep16"), (32, "local64"), (128, "local256"), (32, "dask64"))}
        kit.make("data")
        kit.dvc("repro", "-q")  # the same baseline for both: every stage built and cached
        kit.run(PY, "scripts/server.py", "start")
        try:
            print("1. 16 trials: make sweep, then dvc exp run --queue + dvc queue start -j 2", file=sys.stderr)
            kit.sweep("SWEEP=warmup.yaml")  # the server's first flow run, and the disk cache, warmed
            runs16 = sorted((kit.sweep("SWEEP=sweep16.yaml") for _ in range(SWEEP16_RUNS)), key=lambda run: run.seconds)
            sweep16 = runs16[len(runs16) // 2]  # the median run
            dvc = dvc_queue(kit, points["sweep16"])
            floor = json.loads(kit.run(PY, "-c", FLOOR, "sweep16.yaml", cwd=kit.path / "scripts").output)
            case1 = {"make sweep": dict(sweep_case(sweep16, 16), runs_s=[round(run.seconds, 2) for run in runs16]),
                     "dvc queue": dvc,
                     "where the sweep's time goes": where_time_goes(kit, sweep16, 16, floor)}
            case1["ratio"] = round(case1["make sweep"]["trials_per_s"] / dvc["trials_per_s"], 1)
            report["16 trials vs dvc queue"] = case1

            print("2. local sweeps of 64 and 256 trials", file=sys.stderr)
            local = {16: sweep_case(sweep16, 16)}
            for trials in (64, 256):
                local[trials] = sweep_case(kit.sweep(f"SWEEP=local{trials}.yaml"), trials)
            report["local"] = local

            print("3. 64 trials on a 2-worker Dask cluster", file=sys.stderr)
            dask_port = free_port()
            address = f"tcp://127.0.0.1:{dask_port}"
            cluster_start = kit.make("dask-start", f"DASK_PORT={dask_port}", "DASK_WORKERS=2")
            try:
                cold = kit.sweep("SWEEP=dask64.yaml", f"DASK_ADDRESS={address}")
                warm = kit.sweep("SWEEP=dask64.yaml", f"DASK_ADDRESS={address}")
            finally:
                kit.make("dask-stop")
            report["64 trials, dask vs local"] = {
                "local": local[64],
                "dask (warm workers)": sweep_case(warm, 64),
                "dask (cold workers)": sweep_case(cold, 64),
                "dask_start_s": round(cluster_start.seconds, 2),
                "fixed_cost_s": round(cluster_start.seconds + cold.seconds - warm.seconds, 2),
                "ratio_dask_to_local": round(warm.seconds / local[64]["seconds"], 2),
            }
        finally:
            kit.run(PY, "scripts/server.py", "stop")
    report["load_average_at_end"] = os.getloadavg()[0]
    print_table(report)
    out = ROOT / "reports" / "bench-sweep.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Written to {out.relative_to(ROOT)}")
    return 0


def print_table(report: dict) -> None:
    case1 = report["16 trials vs dvc queue"]
    print(f"{report['cpus']} CPUs; load average {report['load_average_at_start']:.1f} at the start, "
          f"{report['load_average_at_end']:.1f} at the end")
    print(f"{'case':<44} {'trials':>6} {'seconds':>8} {'trials/s':>9} {'peak MB':>8}")
    rows = [("make sweep (16, local; median of 3)", case1["make sweep"]),
            (f"dvc exp run --queue + queue start -j {DVC_JOBS}", case1["dvc queue"])]
    rows += [(f"make sweep, local ({n})", row) for n, row in report["local"].items() if n != 16]
    dask = report["64 trials, dask vs local"]
    rows += [("make sweep, 2 Dask workers, warm (64)", dask["dask (warm workers)"]),
             ("make sweep, 2 Dask workers, cold (64)", dask["dask (cold workers)"])]
    for name, row in rows:
        peak = row.get("peak_mb", "")
        print(f"{name:<44} {row['trials']:>6} {row['seconds']:>8.2f} {row['trials_per_s']:>9.2f} {peak:>8}")
    print(f"make sweep / dvc queue, trials per second: {case1['ratio']}x (target >= 10x, moonshot 30x)")
    where = case1["where the sweep's time goes"]
    print(f"Where the 16-trial sweep's {where['process_s']} s go: {where['before_flow_s']} s before the flow run "
          f"(make data, Python, imports, server check), {where['after_flow_s']} s after it; in the flow run "
          f"({where['flow_body_s']} s): the first trials' imports {where['first_trial_imports_s']} s, a trial "
          f"{where['trial_compute_ms_each']} ms of compute, recording one {where['recording_ms_each']} ms, and the rest "
          f"{where['rest_s']} s, {where['rest_ms_per_task_run']} ms for each of Prefect's {where['prefect_task_runs']} "
          "task runs (with the threads' waits on one another)")
    print(f"Dask (warm) / local, 64 trials: {dask['ratio_dask_to_local']}x the time; the cluster's fixed cost: "
          f"{dask['fixed_cost_s']} s ({dask['dask_start_s']} s to start, the rest the workers' first imports)")


if __name__ == "__main__":
    sys.exit(main())
