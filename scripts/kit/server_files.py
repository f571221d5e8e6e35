"""The project's Prefect server as the kit finds it: its home, pid file, log and database, and the
versions it runs. Read by `make prefect-start|prefect-stop|prefect-status` and `make doctor`."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from prefect.settings import get_current_settings


def home() -> Path:
    return get_current_settings().home.resolve()


def pid_file() -> Path:
    return home() / "server.pid"


def log_file() -> Path:
    return home() / "server.log"


def database() -> str:
    """The server's database as these settings name it: SQLite's file, or the URL of another
    database without its credentials and options (postgresql+asyncpg://host:5432/prefect)."""
    url = get_current_settings().server.database.connection_url
    text = url.get_secret_value() if url else f"sqlite+aiosqlite:///{home()}/prefect.db"
    if text.startswith("sqlite"):
        return str(Path(text.split("///", 1)[-1]).resolve())
    parts = urlsplit(text)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def our_server_pid(clean: bool = True) -> int | None:
    """The pid in the pid file, if that process is alive and is a Prefect server; else None,
    after removing (with `clean`) a pid file that a killed server left behind."""
    path = pid_file()
    try:
        pid = int(path.read_text().strip())
        cmdline = psutil.Process(pid).cmdline()
    except (FileNotFoundError, ValueError, psutil.Error):
        cmdline = []
    if "prefect" in " ".join(cmdline) and "server" in cmdline and "start" in cmdline:
        return pid
    if clean and path.exists():
        path.unlink()
        print(f"Removed a stale pid file ({path}): its server is gone.")
    return None


def versions() -> str:
    return f"prefect {metadata.version('prefect')}, dvc {metadata.version('dvc')}, python {sys.version.split()[0]}"
