"""Time the ways of running the pipeline side by side, in one run, from the same repo state.

    make bench [BENCH_RUNS=N]        (PYTHONPATH=scripts python benchmarks/bench.py [--runs N])

Works in a temporary copy of the kit (sharing .venv), so the working tree is untouched. Each
case is timed N times, round robin (one of each, then again), so load on a shared machine falls
on all cases alike; the table gives medians and each one's ratio to the floor: one plain Python
process calling the three stage functions. A "full" run uses a split.random_state not seen
before, so every stage must run in both options (Option B's cache would otherwise find it, and
so would DVC's run-cache for outputs that are not `persist`). Uses the kit's Prefect server when one answers, as the run targets do; the table
says which. Writes reports/bench.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from project import ROOT  # scripts/project.py

FLOOR = """
import sys
from mltoy.params import load_params
from mltoy.pipeline import stage_evaluate, stage_prepare, stage_train
p = load_params("params.yaml")
stage_prepare("data/raw/iris.csv", "data/processed/train.csv", "data/processed/test.csv", p)
stage_train("data/processed/train.csv", "models/model.joblib", p)
stage_evaluate("data/processed/test.csv", "models/model.joblib", "reports/metrics.json", "reports/predictions.csv")
"""
PY = str(ROOT / ".venv" / "bin" / "python")
CASES = {
    # name: (command, needs a new params value first)
    "floor (3 stage functions, 1 process)": ([PY, "-c", FLOOR], True),
    "dvc repro, full": ([PY, "-m", "dvc", "repro", "-q"], True),
    "dvc repro, no-op": ([PY, "-m", "dvc", "repro", "-q"], False),
    "make run-dvc, full": (["make", "-s", "run-dvc", "SHOW_METRICS=0"], True),
    "make run-dvc, no-op": (["make", "-s", "run-dvc", "SHOW_METRICS=0"], False),
    "make run-stages, full": (["make", "-s", "run-stages", "SHOW_METRICS=0"], True),
    "make run-stages, cached": (["make", "-s", "run-stages", "SHOW_METRICS=0"], False),
}
FLOOR_CASE = next(iter(CASES))


def copy_kit(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for rel in filter(None, files.stdout.split("\0")):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench", "--no-verify"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)


def set_random_state(repo: Path, value: int) -> None:
    text = (repo / "params.yaml").read_text().splitlines()
    text = [f"  random_state: {value}" if line.strip().startswith("random_state:") else line for line in text]
    (repo / "params.yaml").write_text("\n".join(text) + "\n")


def server_up() -> bool:
    status = subprocess.run([PY, "scripts/server.py", "status"], cwd=ROOT, capture_output=True, text=True)
    return status.stdout.split()[1:2] == ["up"]


def timed(cmd: list[str], repo: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 3)))
    runs = parser.parse_args().runs
    fresh = itertools.count(1000)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        repo = Path(tmp) / "kit"
        copy_kit(repo)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
        dvc_config = [PY, "-m", "dvc", "config", "--local", "core.site_cache_dir", str(Path(tmp) / "dvc-site")]
        subprocess.run(dvc_config, cwd=repo, check=True)
        warm = ["make", "-s", "run-dvc", "SHOW_METRICS=0"], ["make", "-s", "run-stages", "SHOW_METRICS=0"]
        for cmd in warm:  # the same state for every case: outputs built, both caches warm
            timed(cmd, repo, env)
        for i in range(runs):
            for name, (cmd, needs_new_params) in CASES.items():
                if needs_new_params:
                    set_random_state(repo, next(fresh))
                elapsed = timed(cmd, repo, env)
                times[name].append(elapsed)
                print(f"  run {i + 1}/{runs}  {name:<40} {elapsed:6.2f} s", file=sys.stderr, flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians[FLOOR_CASE]
    report = {
        "server_running": server_up(),
        "runs": runs,
        "cases": {
            name: {"median_s": round(medians[name], 3), "ratio_to_floor": round(medians[name] / floor, 2),
                   "runs_s": [round(t, 3) for t in times[name]]}
            for name in CASES
        },
    }
    print(f"Medians of {runs} runs; Prefect server running: {'yes' if report['server_running'] else 'no'}")
    print(f"{'case':<40} {'median':>8} {'x floor':>8}")
    for name, row in report["cases"].items():
        print(f"{name:<40} {row['median_s']:>7.2f}s {row['ratio_to_floor']:>8.2f}")
    ratio = medians["make run-stages, full"] / medians["make run-dvc, full"]
    print(f"run-stages full / run-dvc full = {ratio:.2f} (goal <= 0.6); "
          f"run-stages cached / run-dvc no-op = {medians['make run-stages, cached'] / medians['make run-dvc, no-op']:.2f} (goal <= 1)")
    out = ROOT / "reports" / "bench.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
