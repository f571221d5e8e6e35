"""Restore data/raw/iris.csv, offline: from DVC's cache, else `dvc pull` when a remote answers,
else rebuilt from the copy of iris that scikit-learn ships, checked against the md5 that DVC's
record (data/raw/iris.csv.dvc) holds (kit/data.py).

    python scripts/get_data.py        (make data)

A file that is already there is left alone, even when it differs from the record: it may have
been changed on purpose, and `dvc status` shows the change.
"""

from __future__ import annotations

import sys

from kit import project

project.enter()  # first: mltoy importable

from kit.data import DataNotRestored, restore  # noqa: E402
from kit.pipeline_lock import pipeline_lock  # noqa: E402


def main() -> int:
    raw = project.ROOT / project.RAW_DATA
    if not raw.is_file():
        # Two first runs at once: the second waits here, then finds the data restored.
        with pipeline_lock(project.ROOT, "make data"):
            if not raw.is_file():
                try:
                    print(restore(project.ROOT))
                except DataNotRestored as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                return 0
    print(f"{project.RAW_DATA}: present, left as it is (`dvc status` shows whether it matches {project.RAW_RECORD.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
