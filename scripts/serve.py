"""Serve the kit's flows from this checkout until Ctrl-C: Options A, B and C as deployments whose
runs this process starts, one at a time, in this folder. The UI's Run button works on them, and
so does `prefect deployment run`.

    python scripts/serve.py [--schedule CRON|SECONDS]     (make serve [SCHEDULE=...])

The schedule applies to Option A (`run-dvc`). Unlike `make deploy`, there is no worker and no
git: the runs use this folder as it is, uncommitted edits included. Each takes the pipeline lock,
as every flow does, so a served run and a `make run-dvc` typed meanwhile take turns.
"""

from __future__ import annotations

import argparse
import sys

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect import flow, serve  # noqa: E402

from kit import deployments  # noqa: E402
from kit.connection import server_connection  # noqa: E402

# Deployment name (as the make target that runs the same flow by hand) -> the flow's entrypoint.
SERVED = {
    "run-dvc": "scripts/flow_dvc.py:dvc_pipeline",
    "run-stages": "scripts/flow_stages.py:stage_pipeline",
    "run-dvc-stages": "scripts/flow_dvc_stages.py:dvc_stages_pipeline",
}
SCHEDULED = "run-dvc"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedule", default="", help="a cron string or a number of seconds; empty: none")
    args = parser.parse_args(argv)
    schedule = deployments.schedule(args.schedule)
    with server_connection("make serve"):
        served = []
        for name, entrypoint in SERVED.items():
            # Loaded from its file as a worker loads it; the script's first line moves the process
            # to the project root (project.enter), where this one already is.
            pipeline = flow.from_source(source=str(project.ROOT), entrypoint=entrypoint)
            # An empty list removes a schedule that an earlier `make serve SCHEDULE=...` set.
            when = schedule if name == SCHEDULED and schedule else {"schedules": []}
            served.append(pipeline.to_deployment(name=name, tags=[project.RUN_TAG], concurrency_limit=1, **when))
        serve(*served, limit=1)  # one run at a time: they share this folder
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
