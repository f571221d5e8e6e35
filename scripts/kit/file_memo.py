"""What the kit learned about a file (its md5, what the data check found), kept while the file's
stat (inode, mtime in ns, size) stays the same: the rule DVC's own state database uses, so that a
run whose files have not changed reads none of them. Any write to a file changes its stat, and
what was learned about it is learned again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mltoy.files import md5_file, write_atomic

MEMO = Path(".dvc/tmp/kit-file-memo.json")  # relative to the repository; DVC's tmp, not in git


def stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def _load(repo: Path) -> dict:
    try:
        return json.loads((repo / MEMO).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def recall(repo: Path, path: Path, what: str) -> Any | None:
    """What was learned (`what`: "md5", "data check") about `path`, if it has not changed since."""
    entry = _load(repo).get(path.relative_to(repo).as_posix(), {})
    if entry.get("stat") is None or entry["stat"] != stat(path):
        return None
    return entry.get(what)


def remember(repo: Path, path: Path, before: list[int] | None, **learned: Any) -> None:
    """Keep what was learned about `path`, whose stat was `before` when it was read; nothing is
    kept if it changed meanwhile (what was read may not be what is there)."""
    if before is None or stat(path) != before:
        return
    memo = _load(repo)
    key = path.relative_to(repo).as_posix()
    entry = memo.get(key, {}) if memo.get(key, {}).get("stat") == before else {}
    memo[key] = {**entry, **learned, "stat": before}
    write_atomic(repo / MEMO, lambda tmp: tmp.write_text(json.dumps(memo, indent=1) + "\n"))


def md5(repo: Path, path: Path) -> str | None:
    """The file's md5 (None if there is no such file), hashed only when it changed."""
    if (known := recall(repo, path, "md5")) is not None:
        return known
    before = stat(path)
    value = md5_file(path)
    remember(repo, path, before, md5=value)
    return value
