"""A process worker on the kit's work pool (prefect.yaml), in the foreground until Ctrl-C. For
each run it picks up, it clones the deployment's git source into a temporary folder and runs the
flow there, with this checkout's Python: never in this folder.

    python scripts/worker.py        (make worker; another machine runs the same, pointed at the
                                     same server with PREFECT_API_URL)
"""

from __future__ import annotations

import os
import signal
import sys

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect.settings import get_current_settings  # noqa: E402

from kit import deployments  # noqa: E402
from kit.connection import require_server  # noqa: E402


def main() -> int:
    pool = deployments.work_pool()
    api_url = require_server("make worker")
    # The worker hands its settings to each run's process, which starts in the run's clone: an
    # absolute home keeps the relative one of prefect.toml (.prefect) from landing in that clone.
    env = dict(os.environ, PREFECT_API_URL=api_url, PREFECT_HOME=str(get_current_settings().home.resolve()))
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    print(f"Worker on work pool {pool} of {api_url.removesuffix('/api')}; Ctrl-C stops it.", flush=True)
    # A shell starts `make worker &` with SIGINT ignored, and exec keeps it so: the worker would
    # then ignore the SIGINT into which it turns a SIGTERM, and never stop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    sys.exit(main())
