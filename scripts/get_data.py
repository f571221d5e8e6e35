"""Restore data/raw/iris.csv, offline: from DVC's cache, else `dvc pull` when a remote answers,
else rebuilt from the copy of iris that scikit-learn ships, checked against the md5 that DVC's
record (data/raw/iris.csv.dvc) holds.

    python scripts/get_data.py        (make data)

A file that is already there is left alone, even when it differs from the record: it may have
been changed on purpose, and `dvc status` shows the change.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from importlib import resources

import project

project.enter()  # first: the data's paths are relative to the project root; mltoy importable

from mltoy.files import write_atomic  # noqa: E402
from pipeline_lock import pipeline_lock  # noqa: E402

RAW, RECORD = project.RAW_DATA, project.RAW_RECORD
COLUMNS = "sepal_length,sepal_width,petal_length,petal_width,species"


def dvc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, timeout=timeout)


def iris_from_sklearn() -> bytes:
    """scikit-learn's iris.csv (header: n_rows, n_features, class names) in this kit's columns."""
    text = resources.files("sklearn.datasets").joinpath("data", "iris.csv").read_text()
    header, *rows = text.splitlines()
    names = header.split(",")[2:]
    lines = [COLUMNS]
    for row in rows:
        *features, label = row.split(",")
        lines.append(",".join([*features, names[int(label)]]))
    return ("\n".join(lines) + "\n").encode()


def pull_from_remote() -> bool:
    remotes = dvc("remote", "list")
    if remotes.returncode != 0 or not remotes.stdout.strip():
        return False
    try:
        pulled = dvc("pull", str(RECORD), timeout=60)
    except subprocess.TimeoutExpired:
        pulled = None
    if pulled is not None and pulled.returncode == 0 and RAW.is_file():
        print(f"{RAW}: pulled from the DVC remote")
        return True
    print("The DVC remote did not answer, or lacks the data; rebuilding it from scikit-learn's copy instead.")
    return False


def restore() -> int:
    if dvc("checkout", "-q", str(RECORD)).returncode == 0 and RAW.is_file():
        print(f"{RAW}: restored from the local DVC cache")
        return 0
    if pull_from_remote():
        return 0
    data = iris_from_sklearn()
    expected = project.recorded_md5()
    actual = hashlib.md5(data).hexdigest()
    if actual != expected:
        print(
            f"error: iris rebuilt from scikit-learn has md5 {actual}, but {RECORD.name} records "
            f"{expected}; nothing written. Restore the data with `dvc pull` from your remote.",
            file=sys.stderr,
        )
        return 1
    write_atomic(RAW, lambda tmp: tmp.write_bytes(data))
    # Put it in DVC's cache, so the next `dvc repro` finds it recorded rather than re-hashing it.
    committed = dvc("commit", "-f", "-q", str(RECORD))
    if committed.returncode != 0:
        print(f"error: dvc commit failed: {committed.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"{RAW}: rebuilt from scikit-learn's copy of iris (md5 {actual}, as recorded)")
    return 0


def main() -> int:
    if not RAW.is_file():
        # Two first runs at once: the second waits here, then finds the data restored.
        with pipeline_lock(project.ROOT, "make data"):
            if not RAW.is_file():
                return restore()
    print(f"{RAW}: present, left as it is (`dvc status` shows whether it matches {RECORD.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
