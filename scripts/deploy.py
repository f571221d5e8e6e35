"""Register the kit's deployments (prefect.yaml) on the Prefect server, with the work pool they run
on, the git source a worker clones for each run, an optional schedule, and the server-side
automations (scripts/kit/automations.py). Running it again updates each of them in place.

    python scripts/deploy.py [--schedule CRON|SECONDS] [--notify-url URL] [--crash-after SECONDS]
    make deploy [SCHEDULE=...] [NOTIFY_URL=...] [CRASH_AFTER=90]

The source is the repository's `origin` remote, else this repository's own path; the branch is
the current one. Workers clone what is committed there, not this folder: it says so when they
would run something else than your HEAD.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.actions import WorkPoolCreate  # noqa: E402
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName  # noqa: E402
from prefect.exceptions import ObjectNotFound  # noqa: E402

from kit import automations, deployments  # noqa: E402
from kit.connection import server_connection  # noqa: E402
from kit.git import git  # noqa: E402

POOL_TYPE = "process"  # the worker runs each flow run as a process on its machine


def git_source() -> tuple[str, str]:
    """The repository URL and branch that workers clone: `origin` (a local path made absolute, as
    the clone runs in another folder), else this repository itself; the current branch."""
    branch = git(project.ROOT, "branch", "--show-current", check=False)
    if not branch:
        raise SystemExit("error: HEAD is detached: check out the branch that the deployment should run")
    url = git(project.ROOT, "remote", "get-url", "origin", check=False)
    if url is None:
        return str(project.ROOT), branch
    if "://" not in url and (project.ROOT / url).exists():
        url = str((project.ROOT / url).resolve())
    return url, branch


def source_notes(url: str, branch: str) -> list[str]:
    """What the workers will not see: commits not on the source's branch, uncommitted edits."""
    notes = []
    head = git(project.ROOT, "rev-parse", "HEAD")
    theirs = (git(project.ROOT, "ls-remote", url, f"refs/heads/{branch}", check=False) or "").split("\t")[0]
    if theirs != head:
        there = f"at {theirs[:7]}" if theirs else "(no such branch there yet)"
        notes.append(f"note: workers clone {branch} {there} from {url}, not your HEAD {head[:7]}: git push first")
    if git(project.ROOT, "status", "--porcelain", "--untracked-files=no"):
        notes.append("note: uncommitted changes here are not deployed: workers clone what is committed")
    return notes


def ensure_work_pool(name: str) -> str:
    """Create the work pool unless it exists; never reset one that does (its pause, its limits)."""
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=POOL_TYPE))
            return f"work pool {name}: created ({POOL_TYPE})"
    if pool.type != POOL_TYPE:
        raise SystemExit(f"error: work pool {name!r} exists with type {pool.type!r}; the kit's runs need "
                         f"a {POOL_TYPE!r} pool: rename work_pool.name in prefect.yaml")
    return f"work pool {name}: exists"


def deploy(name: str, env: dict[str, str], schedule: dict[str, int | str]) -> None:
    """`prefect deploy` of one prefect.yaml deployment; Prefect's output only when it fails."""
    flags = [f"--{kind}={value}" for kind, value in schedule.items()]
    args = ["--no-prompt", "deploy", "--name", name, *flags]
    proc = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=project.ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n  ".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"error: `prefect {' '.join(args)}` failed; its last lines:\n  {tail}")


def summary(names: list[str], pool: str) -> list[str]:
    """Each deployment as the server now has it, and the command that runs it."""
    lines = []
    prefect = Path(sys.executable).parent / "prefect"
    if prefect.is_relative_to(project.ROOT):
        prefect = prefect.relative_to(project.ROOT)
    with get_client(sync_client=True) as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)))
        for d in found:
            full = f"{client.read_flow(d.flow_id).name}/{d.name}"
            clone = d.pull_steps[0]["prefect.deployments.steps.git_clone"]
            when = ", ".join(_describe(s.schedule) for s in d.schedules if s.active) or "none"
            lines += [f"deployment '{full}': pool {d.work_pool_name}, clones {clone['repository']} at "
                      f"{clone['branch']}, schedule: {when}",
                      f"  run it: {prefect} deployment run '{full}'"]
    lines.append(f"Runs start when a worker polls {pool}: `make worker`, here or on another machine.")
    return lines


def _describe(schedule) -> str:
    if getattr(schedule, "interval", None):
        return f"every {schedule.interval.total_seconds():g} s"
    return f"cron '{schedule.cron}' ({schedule.timezone or 'UTC'})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedule", default="", help="a cron string or a number of seconds; empty: none")
    parser.add_argument("--notify-url", default="", help="where the server POSTs failed and crashed runs")
    parser.add_argument("--crash-after", type=int, default=automations.CRASH_AFTER,
                        help=f"seconds without a heartbeat before a run is marked Crashed "
                             f"(default: {automations.CRASH_AFTER})")
    args = parser.parse_args(argv)
    schedule = deployments.schedule(args.schedule)
    names, pool = deployments.names(), deployments.work_pool()
    url, branch = git_source()
    with server_connection("make deploy") as api_url:
        for note in source_notes(url, branch):
            print(note)
        print(ensure_work_pool(pool))
        env = dict(os.environ, PREFECT_API_URL=api_url, KIT_GIT_URL=url, KIT_GIT_BRANCH=branch)
        for name in names:
            deploy(name, env, schedule)
        for line in [*automations.apply(args.notify_url, args.crash_after), *summary(names, pool)]:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
