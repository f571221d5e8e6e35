"""The deployed pipeline: what a worker runs for each run of the `dvc-repro` deployment
(prefect.yaml), in a fresh clone of the repository. The data from the DVC remote, the pipeline
as Option A runs it, then the results back where the team gets them: the outputs pushed to the
DVC remote, and the run pushed to git as a DVC experiment named after the flow run.

    make deploy; make worker; then: prefect deployment run 'Deployed pipeline/dvc-repro'

The experiment's name is in the run's log and in its `dvc-experiment` artifact; the flow run's id
is in the experiment's commit message. On a laptop:

    dvc exp pull origin NAME && dvc exp apply NAME && dvc pull
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from kit import runs  # noqa: E402
from kit.data import restore  # noqa: E402
from kit.dvc_run import run_dvc  # noqa: E402
from kit.dvc_yaml import metrics_file  # noqa: E402
from kit.git import git  # noqa: E402
from kit.tasks import check_inputs, dvc_repro, metrics_summary, pipeline_plots  # noqa: E402

GIT_REMOTE = "origin"  # where the clone came from: the deployment's git source
# The tasks that talk to a remote (DVC's storage, git's origin) retry: a network fails for a moment.
NETWORK_RETRIES = {"retries": 2, "retry_delay_seconds": 5}


def dvc_remote(repo: Path) -> str | None:
    """The DVC remote that `dvc pull` and `dvc push` use here (the default one), or None."""
    found = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], cwd=repo,
                           capture_output=True, text=True)
    if found.returncode != 0:  # "No default remote set"
        return None
    return found.stdout.strip() or None


def experiment_name(run_name: str, run_id: str) -> str:
    """The flow run's name and the start of its id: `dvc exp show` and the Prefect UI then show
    the same words, and two runs of the same name still get two experiments."""
    return f"{run_name}-{run_id[:8]}"


@task(name="pull data", **NETWORK_RETRIES)
def pull_data(repo: Path) -> None:
    """`dvc pull` what the DVC remote holds (a new remote holds nothing yet); where it lacks the
    raw data, restore that as `make data` does (scikit-learn's copy, md5-checked)."""
    logger = get_run_logger()
    if remote := dvc_remote(repo):
        logger.info("Pulling from the DVC remote %r", remote)
        run_dvc(repo, "pull", "--allow-missing")
    else:
        logger.warning("No default DVC remote in .dvc/config: nothing to pull, and the outputs will "
                       "stay on this worker (`dvc remote add -d NAME URL`, then commit .dvc/config)")
    if not (repo / project.RAW_DATA).is_file():
        logger.info(restore(repo))  # DataNotRestored fails the task with its reason


@task(name="save experiment")
def save_experiment(repo: Path) -> str:
    """Record the workspace as a DVC experiment (`dvc exp save`) named after this flow run, with
    the run's id and link in its commit message; return its name."""
    logger = get_run_logger()
    if git(repo, "config", "user.email", check=False) is None:
        # A worker's machine may have no git identity; the experiment's commit needs one.
        git(repo, "config", "user.name", "Prefect worker")
        git(repo, "config", "user.email", f"prefect@{socket.gethostname()}")
    name = experiment_name(flow_run.name, flow_run.id)
    message = f"Prefect flow run {flow_run.id} ({flow_run.name}, {flow_run.flow_name})\n\n{flow_run.ui_url}"
    run_dvc(repo, "exp", "save", "--name", name, "--message", message)
    logger.info("DVC experiment: %s (baseline %s on %s)", name,
                git(repo, "rev-parse", "--short", "HEAD"), git(repo, "branch", "--show-current"))
    return name


@task(name="push outputs", **NETWORK_RETRIES)
def push_outputs(repo: Path) -> bool:
    """`dvc push`: the data and every output that dvc.lock records, to the DVC remote; False when
    there is no remote to push to."""
    if dvc_remote(repo) is None:
        get_run_logger().warning("No default DVC remote: the outputs stay on this worker and go with its "
                                 "temporary folder; a teammate rebuilds them with `dvc repro`")
        return False
    run_dvc(repo, "push")
    return True


@task(name="push experiment", **NETWORK_RETRIES)
def push_experiment(repo: Path, name: str, outputs_pushed: bool) -> None:
    """`dvc exp push` the experiment to the git remote the clone came from (its outputs went to the
    DVC remote with `push outputs`), and publish how to get it as the `dvc-experiment` artifact."""
    run_dvc(repo, "exp", "push", "--no-cache", GIT_REMOTE, name)
    source = git(repo, "remote", "get-url", GIT_REMOTE)
    outputs = ("`dvc pull` brings its outputs from the DVC remote" if outputs_pushed else
               "its outputs were not pushed (no DVC remote): `dvc repro` rebuilds them")
    create_markdown_artifact(
        key="dvc-experiment",
        description=f"DVC experiment `{name}`, pushed to {source}",
        markdown=(
            f"**DVC experiment `{name}`**, from flow run `{flow_run.name}` ({flow_run.id}), pushed to "
            f"`{source}`. On a laptop, in a clone of that repository ({outputs}):\n\n"
            f"```\ndvc exp pull {GIT_REMOTE} {name}\ndvc exp apply {name}\ndvc pull\n```\n"
        ),
    )
    get_run_logger().info("Pushed DVC experiment %s to %s: on a laptop, `dvc exp pull %s %s`, "
                          "`dvc exp apply %s`, `dvc pull`", name, source, GIT_REMOTE, name, name)


# async: Prefect then ends the run without waiting for its heartbeat thread (kit/runs.py)
@flow(name="Deployed pipeline")
async def deployed_pipeline() -> None:
    """Pull the data, run the pipeline as Option A does, then push the outputs and the run, as a
    DVC experiment. It runs on this checkout: on a worker, the run's fresh clone."""
    repo = project.ROOT
    with runs.pipeline_run(repo):
        pull_data(repo)
        check_inputs(repo)
        dvc_repro(repo)
        plotted = pipeline_plots.submit(repo)  # drawn while the metrics are published
        metrics_summary(metrics_file(repo))
        plotted.result()
        name = save_experiment(repo)
        pushed = push_outputs(repo)
        push_experiment(repo, name, outputs_pushed=pushed)
