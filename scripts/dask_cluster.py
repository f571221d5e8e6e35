"""A Dask cluster for sweeps: a scheduler and workers in the background, or this machine joined
to a scheduler as workers that can run trials.

    python scripts/dask_cluster.py start [--workers N] [--host H] [--port P]   (make dask-start [DASK_WORKERS=2])
    python scripts/dask_cluster.py stop                                        (make dask-stop)
    python scripts/dask_cluster.py worker ADDRESS [--workers N]                (make dask-worker DASK_ADDRESS=tcp://host:8786)

What a worker needs to run a trial: this venv (the same Prefect, Dask and cloudpickle as the
flow's process), the kit's code importable (its root and scripts/ on PYTHONPATH, set here), and
the trial's data, which travels with each trial. The scheduler needs the same venv and code: it
unpickles every task it is sent, and prefect-dask sends each with its flow and parameters. So
both are started here, from a checkout of the kit at the sweep's commit.

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
from importlib.util import find_spec
from urllib.parse import urlsplit

import psutil

from processes import stop_group
from project import ROOT

STATE = ROOT / ".dask"
SCHEDULER, WORKERS = "scheduler", "workers"
START_TIMEOUT = 90  # a cold start of Python, Dask and the kit's imports on a busy machine
CONNECT_TIMEOUT = 5.0  # seconds
KIT_MODULE = "trials"  # one of the kit's modules: a process that imports it can run trials


def worker_env() -> dict[str, str]:
    """The environment of every Dask process started here: the kit's code importable (mltoy from
    the root; trials, and what the flow's tasks refer to, from scripts/), quiet logs, no telemetry."""
    path = os.pathsep.join([str(ROOT), str(ROOT / "scripts"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, PYTHONPATH=path, DO_NOT_TRACK="1", DASK_LOGGING__DISTRIBUTED="warning")


def dask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dask", *args]


def worker_command(address: str, workers: int, host: str) -> list[str]:
    # One thread each: a trial is CPU-bound Python; processes, not threads, run them side by side.
    return dask_command("worker", address, "--host", host, "--dashboard-address", f"{host}:0",
                        "--nworkers", str(workers), "--nthreads", "1", "--death-timeout", "60")


def survey(address: str, timeout: float = CONNECT_TIMEOUT) -> tuple[int, list[str]] | None:
    """The scheduler at `address`: how many workers it has, and which of it and them cannot
    import the kit's code; None when no scheduler answers there."""
    from distributed import Client

    url = urlsplit(address)
    if url.scheme in ("tcp", "tls"):  # nothing listening: say so at once (Dask retries until its timeout)
        try:
            socket.create_connection((url.hostname, url.port or 8786), timeout=timeout).close()
        except OSError:
            return None
    try:
        with Client(address, timeout=timeout, set_as_default=False) as client:
            workers = client.scheduler_info()["workers"]
            # find_spec is the standard library's: every Dask process can unpickle it.
            without = [] if client.run_on_scheduler(find_spec, KIT_MODULE) else ["the scheduler"]
            if workers:
                without += [name for name, spec in client.run(find_spec, KIT_MODULE).items() if spec is None]
            return len(workers), without
    except (OSError, TimeoutError, ValueError):
        return None


def check_cluster(address: str, need_workers: bool = True) -> None:
    """SystemExit with a one-line error unless a scheduler answers at `address`, it and its
    workers can import the kit's code, and it has workers (when `need_workers`)."""
    found = survey(address)
    if found is None:
        raise SystemExit(f"error: no Dask scheduler answers at {address}; start one with "
                         "`make dask-start`, or check DASK_ADDRESS")
    workers, without = found
    if without:
        raise SystemExit(f"error: {', '.join(without)} at {address} cannot import the kit's code; start "
                         "them from a checkout of the kit (make dask-start, make dask-worker)")
    if need_workers and workers == 0:
        raise SystemExit(f"error: the Dask scheduler at {address} has no workers; add some with "
                         f"`make dask-worker DASK_ADDRESS={address}`")


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
        proc = subprocess.Popen(command, cwd=ROOT, env=worker_env(), stdin=subprocess.DEVNULL,
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
             _spawn(WORKERS, worker_command(address, workers, host))]
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
    os.execve(sys.executable, worker_command(address, workers, host), worker_env())


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
    return worker(args.address, args.workers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
