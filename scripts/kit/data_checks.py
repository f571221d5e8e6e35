"""The raw data the kit has checked, so that a run whose data has not changed reads none of it.

Checking 2M rows takes seconds and reading them whole took 230 MB, on every run, when the file
was exactly what DVC records. So what a check found is kept with the file's stat
(kit/file_memo.py, DVC's state-database rule): while the stat is the same, so are the bytes, and
the findings (the md5 of the bytes read, the rows per class) still hold. Any change to the file
changes its stat, and the next run checks it again, a chunk at a time. The split params are
checked against the findings on every run.
"""

from __future__ import annotations

from pathlib import Path

from kit import file_memo
from mltoy.data import RawSummary, scan_raw


def check(repo: Path, path: Path) -> RawSummary:
    """The raw data's findings: remembered while the file is unchanged, else from a new check,
    chunked (mltoy.data.scan_raw, which imports pandas then), which raises DataError on bad data."""
    if (found := file_memo.recall(repo, path, "data check")) is not None:
        return RawSummary(**found)
    before = file_memo.stat(path)
    summary = scan_raw(path)
    file_memo.remember(repo, path, before, md5=summary.md5,
                       **{"data check": {"md5": summary.md5, "rows": summary.rows, "classes": summary.classes}})
    return summary
