"""Every way of running, timed on data of a given size, with the peak memory of each run's whole
process tree: bare `dvc repro`, Options A, B and C (full and no-op), and an 8-trial sweep (first
and cached) against DVC's own queue on the same grid.

    python benchmarks/bench_scale.py --rows N       (make bench-scale ROWS=N; 150: the kit's iris)

Works in a temporary copy of the kit (sharing .venv) with a Prefect server of its own on a free
port; the working tree and any server you run are untouched. With --rows other than 150, the
copy's data/raw/iris.csv is an iris-shaped dataset of that many rows (benchmarks/iris_rows.py:
the same bytes every time), added to DVC and committed, as a user with real data would. A
"full" run first sets a split.random_state not seen before, so every stage runs. Each case runs
once (--runs N: N times, round robin, medians); --sweeps-only times only the sweeps and the
queue. Writes reports/bench-scale-ROWS.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from harness import PY, Kit, Run, dvc_queue, grid, set_random_state
from iris_rows import write_rows
from kit_copy import ROOT

SWEEP_C = [0.01, 0.1, 1.0, 10.0]  # x standardize: the 8-point grid of sweep.yaml
QUEUE_JOBS = 2


def make(*args: str) -> list[str]:
    return ["make", "-s", "--no-print-directory", *args, "SHOW_METRICS=0"]


def prepare(kit: Kit, rows: int) -> None:
    """The copy's data at `rows` rows, recorded by DVC and committed; the pipeline built once."""
    kit.make("data")
    if rows != 150:
        write_rows(rows, kit.path / "data" / "raw" / "iris.csv")
        kit.dvc("add", "-q", "data/raw/iris.csv")
        kit.run("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qam",
                f"{rows} rows", "--no-verify")
    kit.dvc("repro", "-q")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sweeps-only", action="store_true", help="only the sweeps against DVC's queue")
    args = parser.parse_args()
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="kit-bench-scale-") as tmp:
        kit = Kit(Path(tmp) / "kit")
        print(f"Making {args.rows} rows and building the pipeline once", file=sys.stderr, flush=True)
        prepare(kit, args.rows)
        points = grid(kit.path / "bench8.yaml", SWEEP_C)
        kit.run("git", "add", "bench8.yaml")
        kit.run("git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "sweep")
        fresh = itertools.count(1000)
        kit.start_server()
        try:
            if not args.sweeps_only:
                kit.make("run-stages", "SHOW_METRICS=0")  # Option B's cache warm
            cases = {
                "dvc repro, full": ([PY, "-m", "dvc", "repro", "-q"], True),
                "dvc repro, no-op": ([PY, "-m", "dvc", "repro", "-q"], False),
                "Option A, full": (make("run-dvc"), True),
                "Option A, no-op": (make("run-dvc"), False),
                "Option B, full": (make("run-stages"), True),
                "Option B, cached": (make("run-stages"), False),
                "Option C, full": (make("run-dvc-stages"), True),
                "Option C, no-op": (make("run-dvc-stages"), False),
            }
            for i in range(args.runs):
                for name, (cmd, full) in ({} if args.sweeps_only else cases).items():
                    if full:
                        set_random_state(kit.path, next(fresh))
                    results.setdefault(name, []).append(kit.run(*cmd))
                    print(f"  run {i + 1}/{args.runs}  {name:<22} {results[name][-1].seconds:8.2f} s "
                          f"{results[name][-1].peak_mb:7.0f} MB", file=sys.stderr, flush=True)
                kit.run("git", "checkout", "params.yaml")
                kit.dvc("repro", "-q")  # the baseline again, for the sweeps
                shutil.rmtree(kit.path / ".dvc" / "tmp" / "kit-stage-runs", ignore_errors=True)  # nothing recorded
                first = kit.make("sweep", "SWEEP=bench8.yaml", "SHOW_METRICS=0")
                cached = kit.make("sweep", "SWEEP=bench8.yaml", "SHOW_METRICS=0")
                results.setdefault("sweep, 8 trials", []).append(first)
                results.setdefault("sweep, 8 trials, cached", []).append(cached)
                print(f"  run {i + 1}/{args.runs}  sweeps {first.seconds:.2f} s, cached {cached.seconds:.2f} s",
                      file=sys.stderr, flush=True)
            queue = dvc_queue(kit, points, QUEUE_JOBS)
            results["DVC queue, 8 trials (-j 2)"] = [queue]
        finally:
            kit.stop_server()
    report = summarize(args.rows, results)
    out = ROOT / "reports" / f"bench-scale-{args.rows}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"Written to {out.relative_to(ROOT)}")
    return 0


def summarize(rows: int, results: dict[str, list[Run]]) -> dict:
    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    cases = {name: {"seconds": median([r.seconds for r in runs]), "peak_mb": round(median([r.peak_mb for r in runs])),
                    "runs_s": [round(r.seconds, 2) for r in runs]} for name, runs in results.items()}
    for name in ("sweep, 8 trials", "sweep, 8 trials, cached"):
        cases[name]["flow_process_peak_mb"] = round(median([r.peak_of("scripts/sweep.py") for r in results[name]]))
    sec = {name: case["seconds"] for name, case in cases.items()}
    ratios = {"DVC queue / sweep (8 trials)": round(sec["DVC queue, 8 trials (-j 2)"] / sec["sweep, 8 trials"], 1)}
    if "Option A, full" in sec:
        ratios["C full / A full"] = round(sec["Option C, full"] / sec["Option A, full"], 2)
    # DVC's queue runs its experiments in daemons outside the command's process tree.
    cases["DVC queue, 8 trials (-j 2)"]["peak_mb"] = None
    return {"rows": rows, "cases": cases, "ratios": ratios}


def print_table(report: dict) -> None:
    print(f"{report['rows']} rows: seconds and the peak memory of each run's process tree")
    print(f"{'case':<30} {'seconds':>8} {'peak MB':>8}")
    for name, case in report["cases"].items():
        flow = f"  (flow process {case['flow_process_peak_mb']} MB)" if "flow_process_peak_mb" in case else ""
        peak = "-" if case["peak_mb"] is None else case["peak_mb"]
        print(f"{name:<30} {case['seconds']:>8.2f} {peak:>8}{flow}")
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio}")


if __name__ == "__main__":
    sys.exit(main())
