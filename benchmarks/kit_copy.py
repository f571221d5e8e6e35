"""A copy of the kit as a clone would have it: what git tracks, with uncommitted edits and new
files not yet added (not what .gitignore leaves out: .venv, data, outputs). The tests and the
benchmarks work in such copies and never touch the working tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def copy_kit(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted in the working tree is left out, as it is there
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def new_repo(dest: Path) -> None:
    """A copy of the kit committed as a fresh clone is, sharing this checkout's .venv."""
    copy_kit(dest)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench", "--no-verify"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
