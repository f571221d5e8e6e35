"""Files written whole or not at all, and their md5 (the hash DVC records)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it over `path`.

    A writer that fails or is killed leaves the previous file as it was. The temporary name is
    fixed, so a killed run leaves at most one stray file, and the next write replaces it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def md5_file(path: Path) -> str | None:
    """The file's md5, as DVC records it; None when there is no such file."""
    try:
        return hashlib.md5(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
