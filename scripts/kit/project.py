"""The project's root and standard files, and `enter()`, the one process-wide set-up step that
every script in scripts/ takes first.

Prefect reads its settings from prefect.toml in the current folder, once, when it is imported.
So each script calls `enter()` before it imports Prefect: the process moves to the project root
and `mltoy` becomes importable (`kit` already is: Python puts a script's own folder, scripts/,
on the import path). This is the one place the import path is set; processes started from a
script (Dask's workers) inherit it. Paths a user typed on the command line are resolved against
the folder they typed them in (`user_path`), so the scripts work from any folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]  # scripts/kit/project.py

# Relative to a repository's root, as DVC and git name them.
PARAMS = Path("params.yaml")
RAW_DATA = Path("data/raw/iris.csv")
RAW_RECORD = RAW_DATA.with_name(RAW_DATA.name + ".dvc")  # DVC's record of the raw data
PIPELINE_LOCK = Path(".dvc/tmp/kit-pipeline.lock")
PREFECT_YAML = Path("prefect.yaml")  # the deployments, as code

# The Prefect tag every kit run carries (local, served and deployed): the server's automations
# (kit/automations.py) act on the runs that have it, and on no others.
RUN_TAG = "kit"

_caller_cwd = Path.cwd()  # read here, before enter() moves the process


def enter() -> None:
    """Move to the project root and make `mltoy` importable; keep Prefect's client telemetry off
    (prefect.toml has no key for it), and DVC's analytics in every repository the kit runs DVC in
    (the kit's .dvc/config turns them off for its own; another's may not, and each DVC command
    would then spend 0.17 s starting a process that tries the internet)."""
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def user_path(path: str | Path) -> Path:
    """A path typed by the user, relative to the folder they ran the command from."""
    return (_caller_cwd / Path(path).expanduser()).resolve()


def recorded_md5(repo: Path = ROOT) -> str:
    """The md5 that DVC's record (RAW_RECORD) holds for the raw data."""
    return yaml.safe_load((repo / RAW_RECORD).read_text())["outs"][0]["md5"]
