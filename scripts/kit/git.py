"""git, as the kit asks it things: one command in a repository, its answer as text."""

from __future__ import annotations

import subprocess
from pathlib import Path

TIMEOUT = 60  # seconds; `git ls-remote` of an unreachable remote would otherwise hang


class GitError(RuntimeError):
    """A git command failed; the message names it and ends with what git said."""


def git(repo: Path, *args: str, check: bool = True) -> str | None:
    """The output of `git ARGS` in `repo`, stripped. When git fails: GitError, or None where
    `check` is false (the question had no answer: no such remote, a detached HEAD)."""
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode == 0:
        return proc.stdout.strip()
    if check:
        raise GitError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return None
