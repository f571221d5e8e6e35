"""The raw data, restored offline: from DVC's cache, else `dvc pull` when a remote answers, else
rebuilt from the copy of iris that scikit-learn ships, checked against the md5 that DVC's record
(data/raw/iris.csv.dvc) holds. `make data` and the deployed flow use it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from importlib import util
from pathlib import Path

from kit.project import RAW_DATA, RAW_RECORD, recorded_md5
from mltoy.data import COLUMNS
from mltoy.files import write_atomic


class DataNotRestored(RuntimeError):
    """None of the ways could restore the raw data; the message says why, in one line."""


def dvc(repo: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                          timeout=timeout)


def iris_from_sklearn() -> bytes:
    """scikit-learn's iris.csv (header: n_rows, n_features, class names) in this kit's columns.
    Found by the package's location, not imported: importing sklearn.datasets costs 1 s (SciPy)."""
    spec = util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-learn is not installed")
    text = (Path(spec.origin).parent / "datasets" / "data" / "iris.csv").read_text()
    header, *rows = text.splitlines()
    names = header.split(",")[2:]
    lines = [",".join(COLUMNS)]
    for row in rows:
        *features, label = row.split(",")
        lines.append(",".join([*features, names[int(label)]]))
    return ("\n".join(lines) + "\n").encode()


def pull_from_remote(repo: Path) -> str | None:
    """`dvc pull` the raw data when the repository has a remote and it answers; what was done."""
    remotes = dvc(repo, "remote", "list")
    if remotes.returncode != 0 or not remotes.stdout.strip():
        return None
    try:
        pulled = dvc(repo, "pull", str(RAW_RECORD), timeout=60)
    except subprocess.TimeoutExpired:
        pulled = None
    if pulled is not None and pulled.returncode == 0 and (repo / RAW_DATA).is_file():
        return "pulled from the DVC remote"
    print("The DVC remote did not answer, or lacks the data; rebuilding it from scikit-learn's copy instead.")
    return None


def restore(repo: Path) -> str:
    """Restore the raw data of `repo` (the caller holds its pipeline lock); what was done, as a
    line. DataNotRestored when no way worked: nothing is written then."""
    if dvc(repo, "checkout", "-q", str(RAW_RECORD)).returncode == 0 and (repo / RAW_DATA).is_file():
        return f"{RAW_DATA}: restored from the local DVC cache"
    if pulled := pull_from_remote(repo):
        return f"{RAW_DATA}: {pulled}"
    data = iris_from_sklearn()
    expected, actual = recorded_md5(repo), hashlib.md5(data).hexdigest()
    if actual != expected:
        raise DataNotRestored(
            f"iris rebuilt from scikit-learn has md5 {actual}, but {RAW_RECORD.name} records {expected}; "
            "nothing written. Restore the data with `dvc pull` from your remote.")
    write_atomic(repo / RAW_DATA, lambda tmp: tmp.write_bytes(data))
    # Put it in DVC's cache, so the next `dvc repro` finds it recorded rather than re-hashing it.
    committed = dvc(repo, "commit", "-f", "-q", str(RAW_RECORD))
    if committed.returncode != 0:
        raise DataNotRestored(f"dvc commit failed: {committed.stderr.strip()}")
    return f"{RAW_DATA}: rebuilt from scikit-learn's copy of iris (md5 {actual}, as recorded)"
