"""Files: written whole or not at all, their md5 (the hash DVC records), and YAML read with a
one-line error."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import yaml


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
    """The file's md5, as DVC records it, read a MiB at a time; None when there is no such file."""
    digest = hashlib.md5()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def read_yaml(path: Path, error: type[Exception], what: str) -> object:
    """The data of a YAML file; a missing file or bad syntax raises `error` with one line naming
    the file, and the line and column of the syntax error."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise error(f"{path}: YAML syntax error{where}: {problem}") from None
