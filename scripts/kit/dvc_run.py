"""DVC run from a task: its lines streamed into the task's log, its processes stopped with the
run, and its stages' commands in the environment they belong to. Commands start in the warm DVC
process (kit/warm_dvc.py) where the flow started one, else in a new interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import get_run_logger

from kit import warm_dvc
from kit.dvc_yaml import is_kit_pipeline
from kit.processes import terminate_tree

TAIL_LINES = 15


class DvcFailed(RuntimeError):
    """A DVC command exited non-zero; the message ends with its last lines."""

    def __init__(self, command: str, returncode: int, tail: list[str]):
        super().__init__(f"dvc {command} exited with code {returncode}; its last lines:\n" + "\n".join(tail))
        self.returncode = returncode


def stage_env(repo: Path) -> dict[str, str]:
    """The environment DVC runs the stages' commands in.

    DVC runs a stage's `python ...` with the `python` on PATH. For the kit's own pipeline that is
    made the kit's interpreter, so `make run-dvc` needs no activated venv. Any other repository's
    stages run exactly as `dvc repro` typed in the user's shell would run them: with the user's
    PATH, and so with the user's own environment and packages.
    """
    if not is_kit_pipeline(repo):
        return dict(os.environ)
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def start_dvc(repo: Path, args: list[str], warm: bool) -> subprocess.Popen | warm_dvc.WarmCommand:
    """`dvc ARGS` started in `repo`, its output and errors on one pipe: forked from the warm DVC
    process when `warm` and it runs, else in a new interpreter."""
    env = stage_env(repo)
    if warm and (command := warm_dvc.run_warm(repo, args, repo, env)):
        return command
    return subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)


def run_dvc(repo: Path, *args: str, warm: bool = False) -> list[str]:
    """Run `dvc ARGS` in `repo` with the kit's DVC, log each line it prints as it prints it, and
    return the lines; raise DvcFailed when it exits non-zero. While another DVC command holds the
    repository, it waits (--wait-for-lock) rather than fail after 3 s. With `warm`, the command
    is forked from this process's warm DVC (kit/warm_dvc.py), started on first use."""
    logger = get_run_logger()
    lines: list[str] = []
    with start_dvc(repo, ["--wait-for-lock", *args], warm) as proc:
        try:
            for line in proc.stdout:
                if line := line.rstrip():
                    logger.info(line)
                    lines.append(line)
        except BaseException:  # Ctrl-C, SIGTERM: stop DVC and the stage it runs before going
            terminate_tree(proc.pid)
            raise
    if proc.returncode != 0:
        raise DvcFailed(" ".join(args), proc.returncode, lines[-TAIL_LINES:])
    return lines
