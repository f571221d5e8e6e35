"""Parameter sweep: the pipeline on every point of sweep.yaml, each trial a Prefect task run and
a DVC experiment (`dvc exp show`), on threads here or on the workers of a Dask cluster.

    python scripts/sweep.py [SWEEP_FILE] [--jobs N] [--dask-address tcp://host:8786] [--no-show-metrics]
    make sweep [SWEEP=sweep.yaml] [JOBS=N] [DASK_ADDRESS=tcp://host:8786] [SHOW_METRICS=0]

Every point is checked by the params schema before anything runs. A trial runs the stage
functions in-process, as Option B does, in a temporary folder of its own (kit/sweep/trials.py), and
returns its outputs; this process alone records each as a DVC experiment as soon as it finishes
(kit/sweep/experiments.py), so the workspace, HEAD and the index are never touched. A point already
computed with the same deps and params is not run again (Option B's rule, kit/stage_cache.py): its
outputs come back from DVC's cache. A trial that fails is listed with its error, the others are
still recorded, and the exit status is 1. Ctrl-C stops the sweep: every experiment recorded by
then is whole, and nothing else is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import PrefectFuture, as_completed  # noqa: E402
from prefect.states import Completed, State  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from kit import runs, stage_cache  # noqa: E402
from kit.dvc_yaml import pipeline_inputs, read_stages  # noqa: E402
from kit.sweep.cluster import check_cluster  # noqa: E402
from kit.sweep.experiments import Experiments, ExperimentsError  # noqa: E402
from kit.sweep.results import Row, format_table, ranked  # noqa: E402
from kit.sweep.spec import Point, Sweep, load_sweep  # noqa: E402
from kit.sweep.trials import Pipeline, TrialResult, run_trial  # noqa: E402
from mltoy import InputError  # noqa: E402

ARTIFACT_KEY = "sweep-results"


class TrialsFailed(RuntimeError):
    """Some trials failed; the others are recorded."""


@dataclasses.dataclass(frozen=True)
class Plan:
    pipeline: Pipeline  # what every trial is sent
    keys: dict[str, str]  # each point's cache key, by name
    cached: dict[str, TrialResult]  # the points already computed, their outputs from DVC's cache


@task(name="read sweep", cache_policy=NO_CACHE)
def read_sweep(sweep_file: Path) -> Sweep:
    """The sweep's points, each checked by the params schema (main() has checked them once
    already, to fail before any flow starts)."""
    sweep = load_sweep(sweep_file, project.ROOT / project.PARAMS)
    get_run_logger().info("Sweep %r: %d points, best %s first", sweep.name, len(sweep.points), sweep.objective)
    return sweep


@task(name="open experiments", cache_policy=NO_CACHE)
def open_experiments(root: Path) -> Experiments:
    """The repository's DVC experiments on HEAD, once the files the trials read (dvc.yaml, the
    code, the raw data) are checked to be HEAD's: an experiment records HEAD's beside its own."""
    experiments = Experiments(root)
    inputs = pipeline_inputs(read_stages(root).values())
    missing = [path for path in inputs if not (root / path).is_file()]
    if missing:
        raise ExperimentsError(f"{missing[0]}: file not found; run `make data` to restore it")
    changed = experiments.uncommitted(["dvc.yaml", *inputs])
    if changed:
        raise ExperimentsError(f"{', '.join(changed)}: not as committed; experiments are recorded on "
                               "HEAD, so commit first (or stash)")
    return experiments


@task(name="plan trials", cache_policy=NO_CACHE)
def plan_trials(root: Path, sweep: Sweep, experiments: Experiments) -> Plan:
    """What each trial is sent (the stages, the bytes of the files they read that no stage
    writes), each point's cache key, and which points a trial with the same key already computed
    and recorded, with its outputs still in DVC's cache."""
    stages = list(read_stages(root).values())
    inputs = {path: (root / path).read_bytes() for path in pipeline_inputs(stages)}
    relative = tuple(dataclasses.replace(s, paths={k: v.relative_to(root) for k, v in s.paths.items()})
                     for s in stages)
    keys = {point.name: stage_cache.pipeline_key(stages, point.params) for point in sweep.points}
    cached = {}
    for point in sweep.points:
        done = stage_cache.recorded(trial, keys[point.name])
        if done and experiments.cached(done["outputs"].values()):
            outputs = {path: experiments.read_cached(md5) for path, md5 in done["outputs"].items()}
            cached[point.name] = TrialResult(outputs, done["metrics"], done["worker"], done["seconds"])
    get_run_logger().info("%d trials: %d to run, %d already computed", len(sweep.points),
                          len(sweep.points) - len(cached), len(cached))
    return Plan(Pipeline(relative, inputs), keys, cached)


@task(name="trial", task_run_name="{point.name}", cache_policy=NO_CACHE)
def trial(point: Point, pipeline: Pipeline) -> TrialResult:
    """The pipeline on one point, in a temporary folder of whichever worker runs it."""
    return run_trial(point.params, pipeline)


@task(name="trial", task_run_name="{point.name}", cache_policy=NO_CACHE)
def cached_trial(point: Point) -> State:
    """A point computed before with the same deps and params: ends at once as Cached."""
    return Completed(name="Cached", message="same deps and params as a recorded trial")


@task(name="record", task_run_name="record {point.name}", cache_policy=NO_CACHE)
def record(experiments: Experiments, plan: Plan, point: Point, result: TrialResult, state: str) -> Row:
    """Record a trial as a DVC experiment, and its outputs under its cache key; its row of results."""
    outcome = experiments.record(point.name, point.values, result.outputs, plan.pipeline.inputs)
    stage_cache.record(trial, plan.keys[point.name], {
        "outputs": {path: hashlib.md5(data).hexdigest() for path, data in result.outputs.items()},
        "metrics": result.metrics, "worker": result.worker, "seconds": result.seconds,
    })
    get_run_logger().info("Experiment %s: %s", point.name, outcome)
    return Row.of(point, state, result)


@task(name="sweep results", cache_policy=NO_CACHE)
def publish_results(sweep: Sweep, rows: list[Row], show: bool = True) -> None:
    """Publish the table artifact `sweep-results` (one row per trial, best first), name the best
    trial in the log, and with `show` print the table; fail when some trials failed."""
    logger = get_run_logger()
    objective = sweep.objective
    rows = ranked(rows, objective)
    create_table_artifact(key=ARTIFACT_KEY, table=[row.as_dict() for row in rows],
                          description=f"Sweep {sweep.name!r}: one row per trial, best {objective} first.")
    if show:
        print(format_table(rows, objective), flush=True)
    best = rows[0] if rows and rows[0].metrics else None
    if best:
        logger.info("Best trial: %s (%s %.4f); to bring it to the workspace: dvc exp apply %s",
                    best.name, objective, best.metrics[objective], best.name)
    failed = [row.name for row in rows if row.state == "Failed"]
    if failed:
        raise TrialsFailed(f"{len(failed)} of {len(rows)} trials failed: {', '.join(failed)}")


# async: Prefect then ends the run without waiting for its heartbeat thread (kit/runs.py)
@flow(name="Parameter sweep")
async def parameter_sweep(sweep_file: Path = project.ROOT / "sweep.yaml", show_results: bool = True) -> None:
    root = project.ROOT
    with runs.pipeline_run(root):
        sweep = read_sweep(sweep_file)
        experiments = open_experiments(root)
        plan = plan_trials(root, sweep, experiments)
        rows = []
        for point in sweep.points:
            if result := plan.cached.get(point.name):
                cached_trial(point)
                rows.append(record(experiments, plan, point, result, "Cached"))
        futures = {trial.submit(point, plan.pipeline): point for point in sweep.points if point.name not in plan.cached}
        for future in as_completed(futures):  # each recorded as soon as it finishes
            point, result = futures[future], outcome(future)
            if isinstance(result, TrialResult):
                rows.append(record(experiments, plan, point, result, "Completed"))
            else:
                rows.append(Row.failed(point, result))
        publish_results(sweep, rows, show_results)


def outcome(future: PrefectFuture) -> TrialResult | BaseException:
    """A finished trial's result, or what it failed with: its own exception, or Dask's (a worker
    that could not load it, or died running it). Then let Dask forget the result: a scheduler
    that keeps it runs the trial again when the worker holding it dies (prefect#15442)."""
    try:
        return future.result(raise_on_failure=False)
    except Exception as exc:
        return exc
    finally:
        release = getattr(future.wrapped_future, "release", None)  # a Dask future's; not a thread's
        if release:
            release()


def main(argv: list[str]) -> int:
    parser = runs.flow_parser(__doc__)
    parser.add_argument("sweep_file", nargs="?", type=project.user_path, default=project.ROOT / "sweep.yaml",
                        help="the sweep (default: sweep.yaml)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="trials to run at once here, without Dask (default: the number of CPUs)")
    parser.add_argument("--dask-address", help="run the trials on the Dask cluster at this scheduler address")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be 1 or more")
    try:
        load_sweep(args.sweep_file, project.ROOT / project.PARAMS)  # nothing starts for a bad sweep
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dask_address:
        from prefect_dask import DaskTaskRunner

        check_cluster(args.dask_address)
        runner = DaskTaskRunner(address=args.dask_address)
        # Without a server, each Dask worker would start a temporary Prefect server of its own.
        needs_server = "a sweep on a Dask cluster (its workers report to it)"
    else:
        runner, needs_server = ThreadPoolTaskRunner(max_workers=args.jobs), None
    return runs.run_flow(parameter_sweep.with_options(task_runner=runner),
                         server_needed_by=needs_server, sweep_file=args.sweep_file, show_results=args.show_metrics)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
