"""Time the ways of running a pipeline side by side, in one run, from the same state, and report
the orchestration tax (four measures of what Prefect adds) and where a no-op Option A run and a
cached Option B run spend their time.

    make bench [BENCH_RUNS=N]        (python benchmarks/bench.py [--runs N])

Works in temporary copies (sharing .venv), with a Prefect server of its own on a free port and on
SQLite (the default), so the working tree and any server you run are untouched. Each case is timed
N times, round robin (one of each, then again), so load on a shared machine falls on all cases
alike; the table gives medians and each one's ratio to the floor: one plain Python process
calling the three stage functions. A "full" run first sets a split.random_state not seen before,
so every stage must run in every option. The diamond (benchmarks/diamond.py: two middle stages
that sleep 6 s each, a two-item foreach that sleeps 1 s) shows what Option C's parallelism buys,
with --jobs at its default (the number of CPUs) and at 4, its four independent stages; its full
runs first change the seed data, so every stage runs.

Last, once (it takes a minute): a fresh clone's first run, with no server up, as a new user has
it: `git clone`, then `make run-dvc`, which builds .venv (packages from uv's download cache as
this machine has it: the download is the network's time, not the kit's), restores the data,
starts Prefect's temporary server on a new database and runs every stage. Timed in its three
steps (`make setup`, `make data`, `make run-dvc`). Writes reports/bench.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from diamond import make_diamond
from harness import Kit, free_port, set_random_state
from kit_copy import ROOT

PY = str(ROOT / ".venv" / "bin" / "python")
FLOOR = """
from mltoy.params import load_params
from mltoy.pipeline import stage_evaluate, stage_prepare, stage_train
p = load_params("params.yaml")
stage_prepare("data/raw/iris.csv", "data/processed/train.csv", "data/processed/test.csv", p)
stage_train("data/processed/train.csv", "models/model.joblib", p)
stage_evaluate("data/processed/test.csv", "models/model.joblib", "reports/metrics.json", "reports/predictions.csv")
"""
DIAMOND_SLEEP = 6
# On the diamond's longest path only sleep counts: first, left (or right), last and report.
CRITICAL_PATH_S = DIAMOND_SLEEP


# What a run pays before its flow starts, timed on its own: the imports, in the process itself
# (its interpreter's teardown is the run's exit, counted there).
IMPORTS = "import sys; sys.path[:0] = ['scripts', '.']; from kit import project; project.enter(); import {}"
IMPORT_TIMER = "import time; t = time.perf_counter(); " + IMPORTS + "; print(time.perf_counter() - t)"

# The runs broken down phase by phase: (name, make target, flow script).
BREAKDOWNS = [
    ("a no-op Option A run", "run-dvc", "flow_dvc"),
    ("a cached Option B run", "run-stages", "flow_stages"),
]


def make(*args: str) -> list[str]:
    return ["make", "-s", *args, "SHOW_METRICS=0"]


class Cases:
    """The cases, by name: (command, folder, what to change first or None)."""

    def __init__(self, kit: Path, diamond: Path):
        fresh = itertools.count(1000)
        new_params = lambda: set_random_state(kit, next(fresh))  # noqa: E731
        new_seed = lambda: (diamond / "data" / "seed.txt").write_text(f"seed {next(fresh)}\n")  # noqa: E731
        dvc_repro = [PY, "-m", "dvc", "repro", "-q"]
        option_c = [PY, str(kit / "scripts" / "flow_dvc_stages.py"), "--no-show-metrics", "--repo", str(diamond)]
        self.table: dict[str, tuple[list[str], Path, Callable | None]] = {
            "floor (3 stage functions, 1 process)": ([PY, "-c", FLOOR], kit, new_params),
            "dvc repro, full": (dvc_repro, kit, new_params),
            "dvc repro, no-op": (dvc_repro, kit, None),
            "make run-dvc, full": (make("run-dvc"), kit, new_params),
            "make run-dvc, no-op": (make("run-dvc"), kit, None),
            "python -c pass": ([PY, "-c", "pass"], kit, None),
            "python: import flow_dvc (Prefect, the kit)": ([PY, "-c", IMPORTS.format("flow_dvc")], kit, None),
            "flow_dvc.py, no-op (no make)": ([PY, "scripts/flow_dvc.py", "--no-show-metrics"], kit, None),
            "make run-stages, full": (make("run-stages"), kit, new_params),
            "make run-stages, cached": (make("run-stages"), kit, None),
            "make run-dvc-stages, full": (make("run-dvc-stages"), kit, new_params),
            "make run-dvc-stages, no-op": (make("run-dvc-stages"), kit, None),
            "diamond: dvc repro -P, full": ([*dvc_repro, "--all-pipelines"], diamond, new_seed),
            "diamond: Option C, full": (option_c, diamond, new_seed),
            "diamond: Option C --jobs 4, full": ([*option_c, "--jobs", "4"], diamond, new_seed),
        }


# The orchestration tax's measures: (name, numerator, denominator, goal).
TAX = [
    ("Option A no-op / dvc repro no-op", "make run-dvc, no-op", "dvc repro, no-op", 4.0),
    ("Option B cached / Option A no-op", "make run-stages, cached", "make run-dvc, no-op", 0.6),
    ("diamond: Option C / serial dvc repro", "diamond: Option C, full", "diamond: dvc repro -P, full", 0.75),
]
FRESH_CLONE_GOAL_S = 40
RATIOS = [  # (numerator, denominator, goal)
    ("make run-stages, full", "make run-dvc, full", 0.6),
    ("make run-stages, cached", "make run-dvc, no-op", 1.0),
    ("make run-dvc-stages, full", "make run-dvc, full", 1.2),
    ("make run-dvc-stages, no-op", "make run-dvc, no-op", 1.3),
    ("diamond: Option C, full", "diamond: dvc repro -P, full", 0.75),
    ("diamond: Option C --jobs 4, full", "diamond: dvc repro -P, full", 0.75),
]


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run `cmd`; its seconds, wall-clock start and end, and its output."""
    started, start = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed, started, time.time(), proc.stdout + proc.stderr


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    return run(cmd, cwd, env)[0]


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def recorded_task_runs(kit: Kit, run_id: str) -> list[dict]:
    """A flow run's task runs once the server has recorded them all: it writes them from the
    client's events, a moment after the client sent them."""
    body, seen = {"flow_runs": {"id": {"any_": [run_id]}}}, None
    for _ in range(50):
        tasks = kit.api("POST", "/task_runs/filter", body)
        final = [t["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for t in tasks]
        if all(final) and [t["id"] for t in tasks] == seen:
            return tasks
        seen = [t["id"] for t in tasks]
        time.sleep(0.2)
    sys.exit(f"flow run {run_id}: its task runs were not all recorded within 10 s")


def run_phases(kit: Kit, target: str) -> tuple[dict[str, float], set[str]]:
    """One `make TARGET` run, split by the times Prefect's server recorded for its flow run and task
    runs: before the flow run exists, its start, each task and the gap before it, and after it
    ends. A task that starts before the one before it ends runs beside it: its line is the time it
    adds past that end, so the lines add up to the run's time. Also the tasks that ran beside."""
    seconds, started, ended, output = run(make(target), kit.path, kit.env)
    run_id = next(line for line in output.splitlines() if "/runs/flow-run/" in line).rsplit("/", 1)[1].strip()
    flow_run = kit.api("GET", f"/flow_runs/{run_id}")
    tasks = recorded_task_runs(kit, run_id)
    # A cached task run never runs (no start or end time): from Pending to Completed(Cached).
    spans = sorted((stamp(t["start_time"] or t["expected_start_time"]), stamp(t["end_time"] or t["state"]["timestamp"]),
                    t["name"].rsplit("-", 1)[0]) for t in tasks)
    phases = {"before the flow run is created": stamp(flow_run["created"]) - started,
              "flow run created -> Running": stamp(flow_run["start_time"]) - stamp(flow_run["created"])}
    path_end, beside = stamp(flow_run["start_time"]), set()
    for start, end, name in spans:
        if start < path_end:
            beside.add(name)
        phases[f"gap before '{name}'"] = max(0.0, start - path_end)
        phases[f"task '{name}'"] = max(0.0, end - max(start, path_end))
        path_end = max(path_end, end)
    phases["last task -> flow run Completed"] = stamp(flow_run["end_time"]) - path_end
    phases["flow run Completed -> process exit"] = ended - stamp(flow_run["end_time"])
    phases["total"] = seconds
    return phases, beside


def breakdown(kit: Kit, runs: int, target: str, script: str,
              medians: dict[str, float]) -> tuple[dict[str, float], set[str]]:
    """Where a `make TARGET` run's time goes, in seconds: the medians of `runs` runs' phases, and
    the part before the flow run split by what is timed on its own: make (`make TARGET` with `true`
    for the interpreter), the interpreter's start, the imports (in their own process, without its
    teardown); what is left of it is the connection probe, the client and the flow run's creation."""
    run(make(target), kit.path, kit.env)  # from whatever the cases left to the state named
    samples = [run_phases(kit, target) for _ in range(runs)]
    names = dict.fromkeys(name for phases, _ in samples for name in phases)
    phases = {name: statistics.median(p.get(name, 0.0) for p, _ in samples) for name in names}
    imports = statistics.median(float(run([PY, "-c", IMPORT_TIMER.format(script)], kit.path, kit.env)[3])
                                for _ in range(runs))
    before = phases.pop("before the flow run is created")
    make_part = statistics.median(timed([*make(target), "PY=true"], kit.path, kit.env) for _ in range(runs))
    python = medians["python -c pass"]
    split = {"make, and what it runs before the flow script": make_part, "interpreter start": python,
             f"imports (Prefect, the kit, {script})": imports,
             "probe, client, flow run creation (the rest before the flow)": before - make_part - python - imports}
    split.update(phases)
    return {name: round(value, 3) for name, value in split.items()}, set().union(*(b for _, b in samples))


def fresh_clone(kit: Kit, tmp: Path) -> dict[str, float]:
    """A fresh clone's first run to its metrics, no server up: clone, then the three steps that
    `make run-dvc` takes on its own, each timed."""
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(kit.path), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "PREFECT_", "DVC_", "VIRTUAL_ENV"))}
    env.update(PREFECT_SERVER_API_PORT=str(free_port()))  # no server there: a new user's first run
    steps = {"make setup (.venv)": ["make", "-s", "setup"], "make data": ["make", "-s", "data"],
             "make run-dvc (temporary server, every stage)": make("run-dvc")}
    times = {name: round(timed(cmd, clone, env), 2) for name, cmd in steps.items()}
    if not (clone / "reports" / "metrics.json").is_file():
        sys.exit("fresh clone: make run-dvc wrote no metrics")
    times["total"] = round(sum(times.values()), 2)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)))
    runs = parser.parse_args().runs
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        kit, diamond = Kit(Path(tmp) / "kit"), Path(tmp) / "diamond"
        make_diamond(diamond, sleep=DIAMOND_SLEEP, site_cache=Path(tmp) / "dvc-site")
        env = kit.env
        cases = Cases(kit.path, diamond).table
        kit.start_server()
        try:
            # The same state for every case: outputs built, Option B's cache warm.
            for cmd, cwd in ((make("run-dvc"), kit.path), (make("run-stages"), kit.path),
                             ([PY, "-m", "dvc", "repro", "-q", "-P"], diamond)):
                timed(cmd, cwd, env)
            times: dict[str, list[float]] = {name: [] for name in cases}
            for i in range(runs):
                for name, (cmd, cwd, change) in cases.items():
                    if change:
                        change()
                    times[name].append(timed(cmd, cwd, env))
                    print(f"  run {i + 1}/{runs}  {name:<44} {times[name][-1]:6.2f} s", file=sys.stderr, flush=True)
            medians = {name: statistics.median(values) for name, values in times.items()}
            breakdowns = {}
            for title, target, script in BREAKDOWNS:
                print(f"  {title}, phase by phase", file=sys.stderr, flush=True)
                breakdowns[title] = breakdown(kit, runs, target, script, medians)
        finally:
            kit.stop_server()
        print("  a fresh clone's first run, no server", file=sys.stderr, flush=True)
        clone = fresh_clone(kit, Path(tmp))
    floor = medians[next(iter(cases))]
    report = {
        "server": "the benchmark's own, on SQLite",
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load_at_start, 2),
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "runs": runs,
        "cases": {name: {"median_s": round(medians[name], 3), "ratio_to_floor": round(medians[name] / floor, 2),
                         "runs_s": [round(t, 3) for t in times[name]]} for name in cases},
        "ratios": {f"{a} / {b}": {"ratio": round(medians[a] / medians[b], 2), "goal": goal} for a, b, goal in RATIOS},
        "diamond_option_c_over_critical_path": round(medians["diamond: Option C --jobs 4, full"] / CRITICAL_PATH_S, 2),
        "orchestration tax": {name: {"ratio": round(medians[a] / medians[b], 2), "of_s": [round(medians[a], 2),
                                     round(medians[b], 2)], "goal": goal} for name, a, b, goal in TAX},
        "fresh clone to first metrics, no server": dict(clone, goal_s=FRESH_CLONE_GOAL_S),
        "where the time goes (s)": {title: phases for title, (phases, _) in breakdowns.items()},
    }
    print(f"Medians of {runs} runs; the benchmark's own Prefect server, on SQLite; {report['cpus']} CPUs, load "
          f"average {report['load_average_at_start']} at the start, {report['load_average_at_end']} at the end")
    print(f"{'case':<44} {'median':>8} {'x floor':>8}")
    for name, row in report["cases"].items():
        print(f"{name:<44} {row['median_s']:>7.2f}s {row['ratio_to_floor']:>8.2f}")
    for name, row in report["ratios"].items():
        print(f"{name} = {row['ratio']:.2f} (goal <= {row['goal']})")
    print(f"diamond: Option C --jobs 4 = {report['diamond_option_c_over_critical_path']:.2f} x its critical path "
          f"({CRITICAL_PATH_S} s of sleep)")
    print("The orchestration tax:")
    for name, row in report["orchestration tax"].items():
        a, b = row["of_s"]
        print(f"  {name:<40} {row['ratio']:5.2f}  ({a:.2f} / {b:.2f} s; goal <= {row['goal']})")
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in clone.items() if k != "total")
    print(f"  {'fresh clone to first metrics, no server':<40} {clone['total']:5.1f} s  ({steps}; "
          f"goal <= {FRESH_CLONE_GOAL_S} s)")
    for (title, target, _), (phases, beside) in zip(BREAKDOWNS, breakdowns.values()):
        print(f"{title[0].upper()}{title[1:]} (make {target}), where the time goes (medians):")
        for name, value in phases.items():
            print(f"  {name:<60} {value:6.2f} s")
        for name in sorted(beside):
            print(f"  ('{name}' runs beside the task before it: its line is the time it adds past that one's end)")
    out = ROOT / "reports" / "bench.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
