"""The Dask cluster a sweep runs on, as the sweep finds it: does a scheduler answer, with workers,
and can it and they import the kit's code (Dask's scheduler unpickles every task it is sent, and
prefect-dask sends each with its flow)."""

from __future__ import annotations

import socket
from importlib.util import find_spec
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 5.0  # seconds
KIT_MODULE = "kit.sweep.trials"  # a process that imports it can run trials


def survey(address: str, timeout: float = CONNECT_TIMEOUT) -> tuple[int, list[str], str | None] | None:
    """The scheduler at `address`: how many workers it has, which of it and them cannot import
    the kit's code, and its dashboard's address (None where it serves none); None when no
    scheduler answers there."""
    from distributed import Client

    url = urlsplit(address)
    if url.scheme in ("tcp", "tls"):  # nothing listening: say so at once (Dask retries until its timeout)
        try:
            socket.create_connection((url.hostname, url.port or 8786), timeout=timeout).close()
        except OSError:
            return None
    try:
        with Client(address, timeout=timeout, set_as_default=False) as client:
            info = client.scheduler_info()
            workers = info["workers"]
            port = info.get("services", {}).get("dashboard")
            dashboard = f"http://{urlsplit(info['address']).hostname}:{port}/status" if port else None
            # find_spec is the standard library's: every Dask process can unpickle it. It raises
            # where the package is missing, and answers None where only the module is.
            try:
                without = [] if client.run_on_scheduler(find_spec, KIT_MODULE) else ["the scheduler"]
            except ImportError:
                without = ["the scheduler"]
            if workers:
                found = client.run(find_spec, KIT_MODULE, on_error="return")
                without += [name for name, spec in found.items() if spec is None or isinstance(spec, Exception)]
            return len(workers), without, dashboard
    except (OSError, TimeoutError, ValueError):
        return None


def check_cluster(address: str, need_workers: bool = True) -> str | None:
    """SystemExit with a one-line error unless a scheduler answers at `address`, it and its
    workers can import the kit's code, and it has workers (when `need_workers`). Returns the
    address of its dashboard, where it has one."""
    found = survey(address)
    if found is None:
        raise SystemExit(f"error: no Dask scheduler answers at {address}; start one with "
                         "`make dask-start`, or check DASK_ADDRESS")
    workers, without, dashboard = found
    if without:
        raise SystemExit(f"error: {', '.join(without)} at {address} cannot import the kit's code; start "
                         "them from a checkout of the kit (make dask-start, make dask-worker)")
    if need_workers and workers == 0:
        raise SystemExit(f"error: the Dask scheduler at {address} has no workers; add some with "
                         f"`make dask-worker DASK_ADDRESS={address}`")
    return dashboard
