"""Parameter sweep: the pipeline on every point of sweep.yaml, each trial a DVC experiment
(`dvc exp show`), its stages run on threads here or on the workers of a Dask cluster.

    python scripts/sweep.py [SWEEP_FILE] [--repo PATH] [--jobs N] [--dask-address tcp://host:8786] [--no-show-metrics]
    make sweep [SWEEP=sweep.yaml] [REPO=path] [JOBS=N] [DASK_ADDRESS=tcp://host:8786] [SHOW_METRICS=0]

Every point is checked before anything runs (by mltoy's params schema, for the kit's pipeline).
Each stage of each trial is a stage run, keyed by DVC's run-cache rule (kit/sweep/plan.py):
trials whose stage runs have the same key share one, so a grid over `train.*` runs prepare once,
and a stage run recorded by an earlier sweep is not run again. A stage the kit has a function
for runs it in a process of its own; any other runs its dvc.yaml cmd, in a folder of its own.
Files go by md5 through DVC's cache (on a Dask cluster: the default DVC remote), never through
this process: it holds md5s, and records each trial as a DVC experiment as soon as it completes
(kit/sweep/experiments.py), without touching the workspace, HEAD or the index. A trial that
fails is listed with its error, the others are still recorded, and the exit status is 1.
Ctrl-C stops the sweep: every experiment recorded by then is whole, and nothing else is written.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import PrefectFuture, as_completed  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from kit import plots, runs  # noqa: E402
from kit.dvc_run import stage_env  # noqa: E402
from kit.dvc_yaml import is_kit_pipeline, metrics_file  # noqa: E402
from kit.progress import Progress  # noqa: E402
from kit.sweep import run  # noqa: E402
from kit.sweep.chart import chart_spec  # noqa: E402
from kit.sweep.cluster import check_cluster  # noqa: E402
from kit.sweep.plan import StageJob  # noqa: E402
from kit.sweep.results import Row, format_table, metric_names, ranked  # noqa: E402
from kit.sweep.spec import Sweep, load_sweep  # noqa: E402
from kit.sweep.store import Store  # noqa: E402
from kit.sweep.trials import StageResult, run_stage_job  # noqa: E402
from mltoy import InputError  # noqa: E402

ARTIFACT_KEY = "sweep-results"
CHART_KEY = "sweep-chart"
PROGRESS_KEY = "sweep-progress"
# The results at full precision and the chart, per sweep: in DVC's own untracked folder, as the
# sweep leaves the workspace as it found it.
RESULTS_DIR = Path(".dvc/tmp/kit-sweeps")
CHART_WIDTH = 800  # pixels: the artifact page's width in a 1400-pixel-wide window


class TrialsFailed(RuntimeError):
    """Some trials failed; the others are recorded."""


def own_pipeline(repo: Path) -> bool:
    """Whether `repo` is this checkout's own pipeline: its stages run as mltoy's functions and
    its points are checked by mltoy's schema. Any other repository's stages run by their cmd."""
    return repo.resolve() == project.ROOT.resolve() and is_kit_pipeline(repo)


@task(name="read sweep", cache_policy=NO_CACHE)
def read_sweep(sweep_file: Path, repo: Path) -> Sweep:
    """The sweep's points, each checked (main() has checked them once already, to fail before
    any flow starts)."""
    sweep = load_sweep(sweep_file, repo / project.PARAMS, schema=own_pipeline(repo))
    get_run_logger().info("Sweep %r: %d points, best %s first", sweep.name, len(sweep.points), sweep.objective)
    return sweep


@task(name="plan stage runs", cache_policy=NO_CACHE)
def plan_sweep(repo: Path, on_dask: bool) -> run.Setup:
    """The pipeline's stages as trials run them, the md5 of each file they read (from DVC's
    records: no data is read), and the store their files go through; checks that all of it is
    as committed."""
    metrics = metrics_file(repo)
    made, notes = run.setup(repo, on_dask, own_pipeline(repo),
                            str(metrics.relative_to(repo)) if metrics else None)
    for note in notes:
        get_run_logger().info(note)
    return made


@task(name="stage", task_run_name="{name}", cache_policy=NO_CACHE)
def stage_run(job: StageJob, name: str, store: Store | None, payload: dict[str, bytes] | None,
              metrics_file: str | None, env: dict[str, str] | None, isolate: bool,
              folder_in: Path | None) -> StageResult:
    """One stage of one trial (or of all the trials that share it), in a folder of its own on
    whichever worker runs it."""
    return run_stage_job(job, store, payload, metrics_file=metrics_file, env=env, isolate=isolate,
                         folder_in=folder_in)


@task(name="record", task_run_name="record {trial.point.name}", cache_policy=NO_CACHE)
def record(made: run.Setup, trial: run.Trial) -> Row:
    """Record a finished trial as a DVC experiment; its row of results."""
    row, what = run.record_trial(made, trial)
    get_run_logger().info("Experiment %s: %s", trial.point.name, what)
    return row


@task(name="sweep results", cache_policy=NO_CACHE)
def publish_results(sweep: Sweep, rows: list[Row], out_dir: Path, show: bool = True) -> None:
    """Publish the table artifact `sweep-results` (one row per trial, best first) and the chart
    `sweep-chart` (the objective against each swept key), write both to `out_dir` (the results at
    full precision), name the best trial in the log, and with `show` print the table; fail when
    some trials failed."""
    logger = get_run_logger()
    objective = sweep.objective
    rows = ranked(rows, objective)
    names = metric_names(rows, objective)
    table = [row.as_dict(names) for row in rows]
    create_table_artifact(key=ARTIFACT_KEY, table=[row.as_dict(names, digits=4) for row in rows],
                          description=f"Sweep {sweep.name!r}: one row per trial, best {objective} first.")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / f"{sweep.name}.csv"
    with results.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["trial"])
        writer.writeheader()
        writer.writerows(table)
    spec = chart_spec(rows, objective, f"Sweep {sweep.name}: {objective} of {len(rows)} trials")
    if spec is not None:
        svg = plots.to_svg(spec, aria=False)  # drawn once: for the file and for the artifact
        results.with_suffix(".svg").write_text(svg, encoding="utf-8")
        image = plots.data_url(plots.fit(svg, CHART_WIDTH))
        create_markdown_artifact(
            key=CHART_KEY, markdown=f"![sweep {sweep.name}]({image})\n",
            description=f"Sweep {sweep.name!r}: {objective} against each swept key, a series per value of the others.")
    logger.info("Results: %s%s", results, f" and {results.with_suffix('.svg').name}" if spec else "")
    if show:
        print(format_table(rows, objective), flush=True)
    best = rows[0] if rows and objective in rows[0].metrics else None
    if best:
        logger.info("Best trial: %s (%s %.4f); to bring it to the workspace: dvc exp apply %s",
                    best.name, objective, best.metrics[objective], best.name)
    failed = [row.name for row in rows if row.state == "Failed"]
    if failed:
        raise TrialsFailed(f"{len(failed)} of {len(rows)} trials failed: {', '.join(failed)}")


# async: Prefect then ends the run without waiting for its heartbeat thread (kit/runs.py)
@flow(name="Parameter sweep")
async def parameter_sweep(sweep_file: Path = project.ROOT / "sweep.yaml", repo: Path = project.ROOT,
                          show_results: bool = True, on_dask: bool = False, dashboard: str | None = None) -> None:
    with runs.pipeline_run(repo):
        if on_dask:
            # Without bokeh (the kit does not install it) the page says so; /info/main/workers.html still works.
            get_run_logger().info("Dask dashboard: %s", dashboard or "none (the scheduler serves none)")
        sweep = read_sweep(sweep_file, repo)
        made = plan_sweep(repo, on_dask)
        env = None if own_pipeline(repo) else stage_env(repo)  # another repository's cmds: the user's environment
        folder_in = None if on_dask else repo / ".dvc" / "tmp"  # beside DVC's cache: inputs are hard links

        def submit(job: StageJob, name: str) -> PrefectFuture:
            return stage_run.submit(job, name, made.store, made.payload(job), made.metrics_file, env,
                                    isolate=not on_dask, folder_in=folder_in)

        with Progress(PROGRESS_KEY, "trial", len(sweep.points), f"Sweep {sweep.name!r}") as progress:
            rows = run.run_trials(made, sweep.points, submit, outcome, lambda trial: record(made, trial),
                                  as_completed, on_done=lambda row: progress.done(row.summary(sweep.objective)))
        publish_results(sweep, rows, repo / RESULTS_DIR, show_results)


def outcome(future: PrefectFuture) -> StageResult | BaseException:
    """A finished stage run's result, or what it failed with: its own exception, or Dask's (a
    worker that could not load it, or died running it). Then let Dask forget the result: a
    scheduler that keeps it runs the task again when the worker holding it dies (prefect#15442)."""
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
    parser.add_argument("sweep_file", nargs="?", type=project.user_path, help="the sweep (default: the repository's sweep.yaml)")
    parser.add_argument("--repo", type=project.user_path, default=project.ROOT, help="the DVC repository to sweep")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="stage runs at once here, without Dask (default: the number of CPUs)")
    parser.add_argument("--dask-address", help="run the stages on the Dask cluster at this scheduler address")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be 1 or more")
    sweep_file = args.sweep_file or args.repo / "sweep.yaml"
    try:
        load_sweep(sweep_file, args.repo / project.PARAMS, schema=own_pipeline(args.repo))  # nothing starts for a bad sweep
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.dask_address:
        from prefect_dask import DaskTaskRunner

        dashboard = check_cluster(args.dask_address)
        runner = DaskTaskRunner(address=args.dask_address)
        # Without a server, each Dask worker would start a temporary Prefect server of its own.
        needs_server = "a sweep on a Dask cluster (its workers report to it)"
    else:
        runner, needs_server, dashboard = ThreadPoolTaskRunner(max_workers=args.jobs), None, None
    return runs.run_flow(parameter_sweep.with_options(task_runner=runner), server_needed_by=needs_server,
                         sweep_file=sweep_file, repo=args.repo, show_results=args.show_metrics,
                         on_dask=bool(args.dask_address), dashboard=dashboard)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
