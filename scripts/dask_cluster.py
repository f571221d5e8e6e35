"""A Dask cluster for sweeps: a scheduler and workers in the background, or this machine joined
to a scheduler as workers that can run trials.

    python scripts/dask_cluster.py start [--workers N] [--host H] [--port P]   (make dask-start [DASK_WORKERS=2])
    python scripts/dask_cluster.py stop                                        (make dask-stop)
    python scripts/dask_cluster.py worker ADDRESS [--workers N]                (make dask-worker DASK_ADDRESS=tcp://host:8786)

What a worker needs to run a trial: this venv (the same Prefect, Dask and cloudpickle as the
flow's process) and the kit's code importable. The scheduler needs the same: it unpickles every
task it is sent, and prefect-dask sends each with its flow and parameters. So both run Dask's own
command line inside this script, after `project.enter()`: the worker processes Dask starts inherit
its import path, as every child that multiprocessing spawns does.

`start` listens on 127.0.0.1 unless given another address; its pid and log files are in .dask/.
Dask's diagnostics server listens on the same address as each process, never on every interface
(Dask's default, even with --no-dashboard).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from kit import project

project.enter()  # first: the kit's code importable here, and in every Dask process started from here

import psutil  # noqa: E402

from kit.processes import stop_group  # noqa: E402
from kit.sweep.cluster import check_cluster, survey  # noqa: E402

ROOT = project.ROOT

STATE = ROOT / ".dask"
SCHEDULER, WORKERS = "scheduler", "workers"
START_TIMEOUT = 90  # a cold start of Python, Dask and the kit's imports on a busy machine


def dask_command(*args: str) -> list[str]:
    """Dask's command line (`dask scheduler ...`, `dask worker ...`), run by this script."""
    return [sys.executable, __file__, "dask", *args]


def run_dask(args: list[str]) -> None:
    """Run Dask's own command line in this process, where the kit is importable; exits."""
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "warning"  # read when Dask is imported
    from dask.cli import run_cli  # what `python -m dask` runs

    sys.argv = ["dask", *args]
    run_cli()


def worker_args(address: str, workers: int, host: str) -> list[str]:
    # One thread each: a trial is CPU-bound Python; processes, not threads, run them side by side.
    return ["worker", address, "--host", host, "--dashboard-address", f"{host}:0",
            "--nworkers", str(workers), "--nthreads", "1", "--death-timeout", "60"]


def _pid(name: str) -> int | None:
    """The pid in .dask/NAME.pid, if that process is alive and is Dask's; else None."""
    try:
        pid = int((STATE / f"{name}.pid").read_text())
        if "dask" in " ".join(psutil.Process(pid).cmdline()):
            return pid
    except (FileNotFoundError, ValueError, psutil.Error):
        pass
    return None


def _spawn(name: str, command: list[str]) -> subprocess.Popen:
    with open(STATE / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # it outlives this command, and Ctrl-C in this shell
    (STATE / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc


def start(workers: int, port: int, host: str) -> int:
    address = f"tcp://{host}:{port}"
    if _pid(SCHEDULER):
        print(f"Dask scheduler already running: {address} (logs: {STATE}/)")
        return 0
    with socket.socket() as s:
        if s.connect_ex((host, port)) == 0:
            print(f"error: port {port} on {host} is in use by another program; pick another: "
                  f"make dask-start DASK_PORT={port + 1}", file=sys.stderr)
            return 1
    STATE.mkdir(exist_ok=True)
    procs = [_spawn(SCHEDULER, dask_command("scheduler", "--host", host, "--port", str(port),
                                            "--dashboard-address", f"{host}:0")),
             _spawn(WORKERS, dask_command(*worker_args(address, workers, host)))]
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and all(proc.poll() is None for proc in procs):
        found = survey(address, timeout=2)
        if found and found[0] >= workers:
            print(f"Dask scheduler running: {address}, {workers} workers (logs: {STATE}/)\n"
                  f"Sweep on it: make sweep DASK_ADDRESS={address}")
            return 0
        time.sleep(0.5)
    stop()  # no half-started cluster: stop what started and say why
    print(f"error: the Dask cluster did not come up within {START_TIMEOUT} s; see {STATE}/{SCHEDULER}.log "
          f"and {STATE}/{WORKERS}.log", file=sys.stderr)
    return 1


def _terminate(name: str) -> bool:
    """Stop the process and its session (Dask's nannies and workers); False if it was not running."""
    pid = _pid(name)
    if pid is not None:
        stop_group(pid)
    (STATE / f"{name}.pid").unlink(missing_ok=True)
    return pid is not None


def stop() -> int:
    # Workers first: a scheduler stopped beside them makes their nannies wait for it.
    stopped = [name for name in (WORKERS, SCHEDULER) if _terminate(name)]
    if stopped:
        print(f"Stopped the Dask {' and '.join(stopped)}.")
    else:
        print("No Dask cluster started by the kit is running.")
    return 0


def worker(address: str, workers: int) -> int:
    """Run workers for the scheduler at `address` in the foreground, until Ctrl-C."""
    check_cluster(address, need_workers=False)  # a one-line error now, not Dask retrying for a minute
    from distributed.utils import get_ip

    # Listen on the interface that reaches the scheduler (127.0.0.1 for a local one), as Dask
    # does for its own port; its diagnostics server too, instead of on every interface.
    host = get_ip(urlsplit(address).hostname)
    print(f"Dask worker{'s' if workers > 1 else ''} for {address} on {host}; Ctrl-C stops "
          f"{'them' if workers > 1 else 'it'}.", flush=True)
    run_dask(worker_args(address, workers, host))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="a local scheduler and workers, in the background")
    start_parser.add_argument("--workers", type=int, default=2)
    start_parser.add_argument("--port", type=int, default=8786)
    start_parser.add_argument("--host", default="127.0.0.1",
                              help="the address to listen on (default: loopback; another machine's "
                                   "workers need this machine's address on their network)")
    commands.add_parser("stop", help="stop what start started")
    dask = commands.add_parser("dask", help="Dask's own command line, with the kit importable (start runs it)")
    dask.add_argument("args", nargs=argparse.REMAINDER)
    worker_parser = commands.add_parser("worker", help="join a scheduler as a worker, in the foreground")
    worker_parser.add_argument("address", help="the scheduler's address, e.g. tcp://host:8786")
    worker_parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be 1 or more")
    if args.command == "start":
        if args.host in ("0.0.0.0", "::", ""):
            parser.error("--host must be one address, not every interface")
        return start(args.workers, args.port, args.host)
    if args.command == "stop":
        return stop()
    if args.command == "dask":
        run_dask(args.args)
    return worker(args.address, args.workers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
