"""Time parameter sweeps side by side, in one run, from the same state, with a Prefect server up.

    python benchmarks/bench_sweep.py       (make bench-sweep)

Works in a temporary copy of the kit (sharing .venv), with a Prefect server of its own on a free
port, so the working tree and any server you run are untouched. Every sweep starts with no stage
run recorded, so every stage run runs. The cases:

1. 16 trials (8 train.C x 2 preprocess.standardize), each recorded as a DVC experiment:
   `make sweep` (the median of 3 runs, after a warm-up sweep) against `dvc exp run --queue`
   (16 times) + `dvc queue start -j 2`, waited for (once: it takes minutes). Trials per second
   of each, and where the sweep's time goes, from Prefect's API.
2. Local sweeps (threads, one per CPU) of 16, 64 and 256 trials: trials per second, and the peak
   memory of the sweep's processes.
3. The same 64 trials on a 2-worker Dask cluster (make dask-start) against local: the ratio, and
   the cluster's fixed cost (its start, and its workers' first stage runs, which import the libraries).

Writes reports/bench-sweep.json and prints a table.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from harness import Kit, Run, dvc_queue, free_port, grid
from kit_copy import ROOT

C_RANGE = (-3, 3)  # train.C from 10**-3 to 10**3, log-spaced
DVC_JOBS = 2
SWEEP16_RUNS = 3  # `make sweep` of 16 trials is timed this many times (the median counts); DVC's queue once


def c_values(n: int) -> list[float]:
    values = [float(f"{10 ** (C_RANGE[0] + (C_RANGE[1] - C_RANGE[0]) * i / (n - 1)):.3g}") for i in range(n)]
    assert len(set(values)) == n
    return values


def sweep(kit: Kit, *args: str) -> Run:
    """`make sweep`, with no stage run recorded: every one runs."""
    shutil.rmtree(kit.path / ".dvc" / "tmp" / "kit-stage-runs", ignore_errors=True)
    return kit.make("sweep", "SHOW_METRICS=0", *args)


def where_time_goes(kit: Kit, run: Run) -> dict[str, float]:
    """The sweep's process split, from Prefect's API, into before the flow run (make data, Python,
    imports, the server check), the flow run, and after it; and the flow run's stage runs, their
    time summed (they run side by side: the sum is larger than the part of the run they take)."""
    run_id = next(line for line in run.output.splitlines() if "/runs/flow-run/" in line).rsplit("/", 1)[1].strip()
    flow_run = kit.api("GET", f"/flow_runs/{run_id}")
    tasks = kit.api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    stages = [t for t in tasks if t["name"].split(" ")[0] in ("prepare", "train", "evaluate")]
    started = datetime.fromisoformat(flow_run["start_time"].replace("Z", "+00:00")).timestamp()
    body = flow_run["total_run_time"]
    return {"process_s": round(run.seconds, 2), "before_flow_s": round(started - run.started, 2),
            "flow_body_s": round(body, 2), "after_flow_s": round(run.ended - started - body, 2),
            "stage_runs": len(stages), "stage_runs_sum_s": round(sum(t["total_run_time"] for t in stages), 2),
            "task_runs": len(tasks)}


def case(run: Run, trials: int) -> dict[str, float]:
    return {"trials": trials, "seconds": round(run.seconds, 2), "trials_per_s": round(trials / run.seconds, 2),
            "peak_mb": round(run.peak_mb)}


def main() -> int:
    report: dict[str, object] = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="kit-bench-sweep-") as tmp:
        kit = Kit(Path(tmp) / "kit")
        points = {name: grid(kit.path / f"{name}.yaml", c_values(n))
                  for n, name in ((2, "warmup"), (8, "sweep16"), (32, "local64"), (128, "local256"), (32, "dask64"))}
        kit.make("data")
        kit.dvc("repro", "-q")  # the same baseline for both: every stage built and cached
        kit.start_server()
        try:
            print("1. 16 trials: make sweep, then dvc exp run --queue + dvc queue start -j 2", file=sys.stderr)
            sweep(kit, "SWEEP=warmup.yaml")  # the server's first flow run, and the disk cache, warmed
            runs16 = sorted((sweep(kit, "SWEEP=sweep16.yaml") for _ in range(SWEEP16_RUNS)), key=lambda r: r.seconds)
            sweep16 = runs16[len(runs16) // 2]  # the median run
            queue = dvc_queue(kit, points["sweep16"], DVC_JOBS)
            case1 = {"make sweep": dict(case(sweep16, 16), runs_s=[round(r.seconds, 2) for r in runs16]),
                     "dvc queue": case(queue, 16), "where the sweep's time goes": where_time_goes(kit, sweep16)}
            case1["ratio"] = round(queue.seconds / sweep16.seconds, 1)
            report["16 trials vs dvc queue"] = case1

            print("2. local sweeps of 64 and 256 trials", file=sys.stderr)
            local = {16: case(sweep16, 16)}
            for trials in (64, 256):
                local[trials] = case(sweep(kit, f"SWEEP=local{trials}.yaml"), trials)
            report["local"] = local

            print("3. 64 trials on a 2-worker Dask cluster", file=sys.stderr)
            dask_port = free_port()
            address = f"tcp://127.0.0.1:{dask_port}"
            cluster_start = kit.make("dask-start", f"DASK_PORT={dask_port}", "DASK_WORKERS=2")
            try:
                cold = sweep(kit, "SWEEP=dask64.yaml", f"DASK_ADDRESS={address}")
                warm = sweep(kit, "SWEEP=dask64.yaml", f"DASK_ADDRESS={address}")
            finally:
                kit.make("dask-stop")
            report["64 trials, dask vs local"] = {
                "local": local[64], "dask (warm workers)": case(warm, 64), "dask (cold workers)": case(cold, 64),
                "dask_start_s": round(cluster_start.seconds, 2),
                "fixed_cost_s": round(cluster_start.seconds + cold.seconds - warm.seconds, 2),
                "ratio_dask_to_local": round(warm.seconds / local[64]["seconds"], 2),
            }
        finally:
            kit.stop_server()
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
        print(f"{name:<44} {row['trials']:>6} {row['seconds']:>8.2f} {row['trials_per_s']:>9.2f} {row['peak_mb']:>8}")
    print(f"DVC's queue / make sweep, time for 16 trials: {case1['ratio']}x")
    where = case1["where the sweep's time goes"]
    print(f"Where the 16-trial sweep's {where['process_s']} s go: {where['before_flow_s']} s before the flow run "
          f"(make data, Python, imports, server check), {where['flow_body_s']} s in it, {where['after_flow_s']} s "
          f"after; its {where['stage_runs']} stage runs took {where['stage_runs_sum_s']} s summed, of "
          f"{where['task_runs']} task runs in all")
    print(f"Dask (warm) / local, 64 trials: {dask['ratio_dask_to_local']}x the time; the cluster's fixed cost: "
          f"{dask['fixed_cost_s']} s ({dask['dask_start_s']} s to start, the rest the workers' first imports)")


if __name__ == "__main__":
    sys.exit(main())
