"""Time the ways of running a pipeline side by side, in one run, from the same state.

    make bench [BENCH_RUNS=N]        (python benchmarks/bench.py [--runs N])

Works in temporary copies (sharing .venv), so the working tree is untouched. Each case is timed
N times, round robin (one of each, then again), so load on a shared machine falls on all cases
alike; the table gives medians and each one's ratio to the floor: one plain Python process
calling the three stage functions. A "full" run first sets a split.random_state not seen before,
so every stage must run in every option. The diamond (benchmarks/diamond.py: two middle stages
that sleep 6 s each, a two-item foreach that sleeps 1 s) shows what Option C's parallelism buys,
with --jobs at its default (the number of CPUs) and at 4, its four independent stages; its full
runs first change the seed data, so every stage runs. Uses the kit's Prefect server
when one answers, as the run targets do; the table says which. Writes reports/bench.json.
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
from pathlib import Path
from typing import Callable

from diamond import make_diamond
from kit_copy import ROOT, new_repo

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
            "make run-stages, full": (make("run-stages"), kit, new_params),
            "make run-stages, cached": (make("run-stages"), kit, None),
            "make run-dvc-stages, full": (make("run-dvc-stages"), kit, new_params),
            "make run-dvc-stages, no-op": (make("run-dvc-stages"), kit, None),
            "diamond: dvc repro -P, full": ([*dvc_repro, "--all-pipelines"], diamond, new_seed),
            "diamond: Option C, full": (option_c, diamond, new_seed),
            "diamond: Option C --jobs 4, full": ([*option_c, "--jobs", "4"], diamond, new_seed),
        }


RATIOS = [  # (numerator, denominator, goal)
    ("make run-stages, full", "make run-dvc, full", 0.6),
    ("make run-stages, cached", "make run-dvc, no-op", 1.0),
    ("make run-dvc-stages, full", "make run-dvc, full", 1.2),
    ("make run-dvc-stages, no-op", "make run-dvc, no-op", 1.3),
    ("diamond: Option C, full", "diamond: dvc repro -P, full", 0.75),
    ("diamond: Option C --jobs 4, full", "diamond: dvc repro -P, full", 0.75),
]


def set_random_state(repo: Path, value: int) -> None:
    text = (repo / "params.yaml").read_text().splitlines()
    text = [f"  random_state: {value}" if line.strip().startswith("random_state:") else line for line in text]
    (repo / "params.yaml").write_text("\n".join(text) + "\n")


def server_up() -> bool:
    status = subprocess.run([PY, "scripts/server.py", "status"], cwd=ROOT, capture_output=True, text=True)
    return status.stdout.split()[1:2] == ["up"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)))
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        kit, diamond = Path(tmp) / "kit", Path(tmp) / "diamond"
        new_repo(kit)
        make_diamond(diamond, sleep=DIAMOND_SLEEP, site_cache=Path(tmp) / "dvc-site")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
        subprocess.run([PY, "-m", "dvc", "config", "--local", "core.site_cache_dir", str(Path(tmp) / "dvc-site")],
                       cwd=kit, check=True)
        cases = Cases(kit, diamond).table
        # The same state for every case: outputs built, Option B's cache warm.
        for cmd, cwd in ((make("run-dvc"), kit), (make("run-stages"), kit), ([PY, "-m", "dvc", "repro", "-q", "-P"], diamond)):
            timed(cmd, cwd, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(runs):
            for name, (cmd, cwd, change) in cases.items():
                if change:
                    change()
                times[name].append(timed(cmd, cwd, env))
                print(f"  run {i + 1}/{runs}  {name:<40} {times[name][-1]:6.2f} s", file=sys.stderr, flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians[next(iter(cases))]
    report = {
        "server_running": server_up(),
        "runs": runs,
        "cases": {name: {"median_s": round(medians[name], 3), "ratio_to_floor": round(medians[name] / floor, 2),
                         "runs_s": [round(t, 3) for t in times[name]]} for name in cases},
        "ratios": {f"{a} / {b}": {"ratio": round(medians[a] / medians[b], 2), "goal": goal} for a, b, goal in RATIOS},
        "diamond_option_c_over_critical_path": round(medians["diamond: Option C --jobs 4, full"] / CRITICAL_PATH_S, 2),
    }
    print(f"Medians of {runs} runs; Prefect server running: {'yes' if report['server_running'] else 'no'}")
    print(f"{'case':<40} {'median':>8} {'x floor':>8}")
    for name, row in report["cases"].items():
        print(f"{name:<40} {row['median_s']:>7.2f}s {row['ratio_to_floor']:>8.2f}")
    for name, row in report["ratios"].items():
        print(f"{name} = {row['ratio']:.2f} (goal <= {row['goal']})")
    print(f"diamond: Option C --jobs 4 = {report['diamond_option_c_over_critical_path']:.2f} x its critical path "
          f"({CRITICAL_PATH_S} s of sleep)")
    out = ROOT / "reports" / "bench.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
