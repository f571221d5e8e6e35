"""What each stage run computed, by its key (DVC's run-cache rule, kit/sweep/plan.py): the md5 and
size of every output, the metrics, the time it took and where, and the git objects of the
outputs git keeps. A small JSON file each, beside DVC's own temporary files; the outputs
themselves stay in the store. A later sweep that meets the same key runs nothing, and reads
none of the outputs: it records the experiment from these.
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.sweep.trials import StageResult
from mltoy.files import write_atomic

FOLDER = Path(".dvc/tmp/kit-stage-runs")  # relative to the repository; `make clean` removes it


def read(repo: Path, key: str) -> tuple[StageResult, dict[str, str]] | None:
    """The recorded result of a stage run, and the git objects of its git-kept outputs."""
    try:
        found = json.loads((repo / FOLDER / f"{key}.json").read_text())
        result = StageResult({path: tuple(out) for path, out in found["outs"].items()}, found["metrics"],
                             found["seconds"], found["worker"])
        return result, found.get("blobs", {})
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def write(repo: Path, key: str, result: StageResult, blobs: dict[str, str]) -> None:
    data = {"outs": result.outs, "metrics": result.metrics, "seconds": result.seconds,
            "worker": result.worker, "blobs": blobs}
    write_atomic(repo / FOLDER / f"{key}.json", lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))
