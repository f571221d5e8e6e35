"""Option A: Prefect operates the DVC pipeline. DVC owns the DAG and decides what is up to date
(`dvc repro`); Prefect adds the run in the UI, its logs and retries.

    python scripts/flow_dvc.py [--fail-once] [--no-show-metrics] [--repo PATH]
    make run-dvc [FAIL_ONCE=1] [SHOW_METRICS=0]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
from pathlib import Path

import kit  # first: it moves to the project root, where Prefect reads prefect.toml
from prefect import flow, get_run_logger, task
from prefect.runtime import task_run

from mltoy.params import load_params
from mltoy.pipeline import read_dataset

TAIL_LINES = 15


class DvcReproFailed(RuntimeError):
    def __init__(self, returncode: int, tail: list[str]):
        super().__init__(f"dvc repro exited with code {returncode}; its last lines:\n" + "\n".join(tail))
        self.returncode = returncode


def _retry_if_transient(_task, _task_run, state) -> bool:
    """Retry the demo's intentional failure and a repository busy with another DVC command.

    A stage that fails on its own (bad code, bad data) fails the same way again: retrying it
    only doubles the wait for the same error.
    """
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, DvcReproFailed):
        return "is busy" in str(exc) or "Unable to acquire lock" in str(exc)
    return isinstance(exc, RuntimeError)


@task(name="check inputs", on_failure=[kit.on_failure])
def check_inputs(repo: Path) -> None:
    """Check params and the raw CSV before DVC runs: one line naming the file and the problem,
    rather than a stage's traceback partway through the pipeline."""
    load_params(repo / "params.yaml")
    read_dataset(repo / "data" / "raw" / "iris.csv")


@task(
    name="dvc repro",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_if_transient,
    on_failure=[kit.on_failure],
)
def dvc_repro(repo: Path, fail_once: bool = False) -> None:
    """Run `dvc repro` in `repo`, streaming each line DVC prints into this task's log."""
    if fail_once and task_run.run_count == 1:
        raise RuntimeError("Intentional one-time failure to demonstrate retries.")
    logger = get_run_logger()
    logger.info("Running: dvc repro")
    logger.info("CWD: %s", repo)
    # DVC runs each stage's `cmd` with the `python` on PATH: make it this interpreter's.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        try:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    logger.info(line)
                    tail.append(line)
        except BaseException:  # Ctrl-C, SIGTERM: stop DVC and the stage it runs before going
            kit.terminate_tree(proc.pid)
            raise
    if proc.returncode != 0:
        raise DvcReproFailed(proc.returncode, list(tail))


@flow(name="Prefect operates DVC pipeline", on_failure=[kit.on_failure])
def dvc_pipeline(repo: Path = kit.ROOT, fail_once: bool = False, show_metrics: bool = True) -> None:
    """Operate the DVC pipeline via `dvc repro`."""
    if kit.is_kit_pipeline(repo):
        check_inputs(repo)
    dvc_repro(repo, fail_once=fail_once)
    kit.metrics_summary(repo / "reports" / "metrics.json", show=show_metrics)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = kit.flow_parser(__doc__, "fail the first attempt, to show a retry")
    parser.add_argument("--repo", type=kit.user_path, default=kit.ROOT, help="the DVC repository to run")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return kit.run_flow(
        "flow_dvc.py", args.repo, dvc_pipeline,
        repo=args.repo, fail_once=args.fail_once, show_metrics=args.show_metrics,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
