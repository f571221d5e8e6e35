"""The tasks the flows share: "check inputs" before DVC runs, "dvc repro" (Option A and the
deployed pipeline), "metrics summary" and "pipeline plots" at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import Artifact, create_markdown_artifact, create_table_artifact

from kit import data_checks, metrics, plots
from kit.dvc_run import run_dvc
from kit.dvc_yaml import read_stages
from kit.project import PARAMS
from kit.retries import fail_first_attempt, retry_demo_failure
from mltoy.data import check_split
from mltoy.params import Params, load_params


@task(name="check inputs")
def check_inputs(repo: Path) -> Params:
    """Validate params and the raw data as prepare will, before DVC runs: a one-line error naming
    the file and the problem, and DVC never records or caches data that prepare would reject.
    Data already checked and unchanged since is not read again (kit/data_checks.py)."""
    params = load_params(repo / PARAMS)
    raw = read_stages(repo)["prepare"].paths["raw_csv"]
    check_split(data_checks.check(repo, raw).classes, raw, params.split)
    return params


@task(name="dvc repro", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_demo_failure)
def dvc_repro(repo: Path, fail_once: bool = False) -> None:
    """Run `dvc repro` in `repo`, each line DVC prints streamed into this task's log."""
    fail_first_attempt(fail_once)
    logger = get_run_logger()
    logger.info("Running: dvc repro")
    logger.info("CWD: %s", repo)
    run_dvc(repo, "repro", warm=True)


@task(name="metrics summary")
def metrics_summary(metrics_path: Path | None, show: bool = True) -> dict[str, float]:
    """Publish the run's metrics as a table artifact, with the change against the previous
    published run; with `show`, also log them (`Metrics: {...}`) and print them as a table.

    Metrics it cannot read are a warning, not a failure: the pipeline itself has finished."""
    logger = get_run_logger()
    if metrics_path is None:  # a repository given with --repo may declare none
        logger.warning("No metrics file declared in dvc.yaml")
        return {}
    try:
        values = metrics.read_metrics(metrics_path)
    except metrics.MetricsError as exc:
        logger.warning("No metrics to summarise: %s", exc)
        return {}
    latest = Artifact.get(metrics.ARTIFACT_KEY)  # read before publishing: it is the previous run's
    previous = metrics.artifact_values(latest.data) if latest else None
    create_table_artifact(
        key=metrics.ARTIFACT_KEY,
        table=metrics.artifact_table(values, previous),
        description=metrics.artifact_description(
            str(metrics_path), latest.created if previous is not None else None
        ),
    )
    if show:
        logger.info("Metrics: %s", json.dumps(values))
        print(metrics.format_table(values), flush=True)
    return values


@task(name="pipeline plots")
def pipeline_plots(repo: Path) -> int:
    """Publish the plots dvc.yaml declares, drawn here (kit/plots.py), as a markdown artifact: each
    beside the previous published run's. Returns how many; none declared: no artifact.

    Like the metrics, a plot it cannot draw is a warning, not a failure: the pipeline has finished."""
    logger = get_run_logger()
    files = plots.pipeline_files(repo)
    if not plots.declares_plots(files):
        logger.info("No plots declared in dvc.yaml: no %s artifact", plots.ARTIFACT_KEY)
        return 0
    start = time.perf_counter()
    source = plots.source_key(repo, files)
    latest = Artifact.get(plots.ARTIFACT_KEY)  # read before publishing: it is the previous run's
    previous = plots.artifact_images(latest.data) if latest else {}
    if previous and plots.artifact_source(latest.data) == source:
        images = previous  # nothing the plots are drawn from changed since: no DVC, no drawing
    elif (size := plots.plot_data_bytes(repo, files)) > plots.MAX_DRAWN_BYTES:
        logger.info("Plots not drawn for this run: their data is %.1f MB, more than a run draws (%.1f MB); "
                    "`make plots` draws them", size / 1e6, plots.MAX_DRAWN_BYTES / 1e6)
        return 0
    else:
        try:
            found, warnings = plots.dvc_plots(repo)
        except plots.PlotsError as exc:
            logger.warning("No plots drawn: %s", exc)
            return 0
        for warning in warnings:
            logger.warning("Plot not drawn: %s", warning)
        if not found:
            logger.info("No plot DVC could load from dvc.yaml: no %s artifact", plots.ARTIFACT_KEY)
            return 0
        images = {}
        for plot in found:
            try:
                images[plot.name] = plots.draw(plot.spec, previous.get(plot.name))
            except ValueError as exc:  # a spec vl-convert cannot draw
                logger.warning("Plot %s not drawn: %s", plot.name, exc)
        if not images:
            return 0
    same = sum(image is previous.get(name) for name, image in images.items())
    previous_at = f"{latest.created:%Y-%m-%d %H:%M:%S %Z}" if previous else None
    markdown = plots.artifact_markdown(images, previous, previous_at, source)
    description = plots.artifact_description(repo, images)
    create_markdown_artifact(key=plots.ARTIFACT_KEY, markdown=markdown, description=description)
    how = ("unchanged: nothing they are drawn from changed since the previous run" if images is previous
           else f"{len(images) - same} drawn, {same} as the previous run's")
    logger.info("Plots: %d published as %r (%d kB; %s) in %.2f s", len(images), plots.ARTIFACT_KEY,
                (len(markdown) + len(description)) // 1000, how, time.perf_counter() - start)
    return len(images)
