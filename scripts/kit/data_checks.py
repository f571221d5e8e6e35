"""The raw data the kit has checked, so that a run whose data has not changed reads none of it.

Checking 2M rows takes seconds and reading them whole took 230 MB, on every run, when the file
was exactly what DVC records. So each check is remembered with the file's stat (inode, mtime in
ns, size) at the time, as DVC's own state database remembers a file's md5: while the stat is the
same, so are the bytes, and the check's findings (the md5 of the bytes it read, the rows per
class) still hold. Any change to the file changes its stat, and the next run checks it again, a
chunk at a time. Nothing here is trusted for more than "these bytes were checked": the split
params are checked against the findings on every run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mltoy.data import RawSummary, scan_raw
from mltoy.files import write_atomic

RECORD = Path(".dvc/tmp/kit-data-checks.json")  # relative to the repository; DVC's tmp, not in git


def _stat(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def _records(repo: Path) -> dict:
    try:
        return json.loads((repo / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def checked(repo: Path, path: Path) -> RawSummary | None:
    """What the last check of `path` found, if the file has not changed since; else None."""
    found = _records(repo).get(str(path.relative_to(repo)))
    try:
        if found is None or found["stat"] != _stat(path):
            return None
        return RawSummary(found["md5"], found["rows"], found["classes"])
    except (FileNotFoundError, KeyError, TypeError):
        return None


def remember(repo: Path, path: Path, stat: list[int], summary: RawSummary) -> None:
    """Record that `path`, with the stat it had before the check read it, was checked."""
    if _stat(path) != stat:  # changed while being checked: what was read may not be what is there
        return
    records = _records(repo)
    records[str(path.relative_to(repo))] = {"stat": stat, "md5": summary.md5, "rows": summary.rows,
                                            "classes": summary.classes}
    write_atomic(repo / RECORD, lambda tmp: tmp.write_text(json.dumps(records, indent=1) + "\n"))


def check(repo: Path, path: Path) -> RawSummary:
    """The raw data's findings: remembered while the file is unchanged, else from a new check,
    chunked (mltoy.data.scan_raw, which imports pandas then), which raises DataError on bad data."""
    if (found := checked(repo, path)) is not None:
        return found
    stat = _stat(path) if path.is_file() else None
    summary = scan_raw(path)
    if stat is not None:
        remember(repo, path, stat, summary)
    return summary
