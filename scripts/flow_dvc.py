"""Option A: Prefect operates the DVC pipeline. DVC owns the DAG and decides what is up to date
(`dvc repro`); Prefect adds the run in the UI, its logs and retries.

    python scripts/flow_dvc.py [--fail-once] [--no-show-metrics] [--repo PATH]
    make run-dvc [FAIL_ONCE=1] [SHOW_METRICS=0]
"""

from __future__ import annotations

import sys
from pathlib import Path

from kit import project, warm_dvc

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported
if __name__ == "__main__":
    warm_dvc.start(project.ROOT)  # DVC's imports, in a process of their own, beside Prefect's below

from prefect import flow  # noqa: E402

from kit import runs  # noqa: E402
from kit.dvc_yaml import is_kit_pipeline, metrics_file  # noqa: E402
from kit.tasks import check_inputs, dvc_repro, metrics_summary, pipeline_plots  # noqa: E402


# async: Prefect then ends the run without waiting for its heartbeat thread (kit/runs.py)
@flow(name="Prefect operates DVC pipeline")
async def dvc_pipeline(repo: Path = project.ROOT, fail_once: bool = False, show_metrics: bool = True) -> None:
    """Operate the DVC pipeline via `dvc repro`."""
    with runs.pipeline_run(repo):
        if is_kit_pipeline(repo):
            check_inputs(repo)
        dvc_repro(repo, fail_once=fail_once)
        plotted = pipeline_plots.submit(repo)  # drawn while the metrics are published
        metrics_summary(metrics_file(repo), show=show_metrics)
        plotted.result()


def main(argv: list[str]) -> int:
    parser = runs.flow_parser(__doc__, "fail the first attempt, to show a retry")
    parser.add_argument("--repo", type=project.user_path, default=project.ROOT, help="the DVC repository to run")
    args = parser.parse_args(argv)
    return runs.run_flow(dvc_pipeline, repo=args.repo, fail_once=args.fail_once, show_metrics=args.show_metrics)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
