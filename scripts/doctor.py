"""What to look at when something is off, changing nothing: Prefect's and DVC's settings and
where each comes from, the server, the database, versions, the data and `dvc status`.

    python scripts/doctor.py        (make doctor)

Exits 0 unless a check finds a problem. The slow parts (`prefect config view` and two DVC
commands) run side by side as processes while the rest is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect.settings import get_current_settings  # noqa: E402

from kit.connection import PROBE_SECONDS, api_request, server_answers, server_api_url  # noqa: E402
from kit.server_files import database, home, log_file, our_server_pid, pid_file, versions  # noqa: E402
from mltoy.files import md5_file  # noqa: E402

Problem = bool  # each check returns its lines and whether they report a problem


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _api_get(url: str) -> object:
    """GET a JSON answer from the API with this shell's credentials, if any."""
    with urllib.request.urlopen(api_request(url), timeout=PROBE_SECONDS) as resp:
        return json.load(resp)


def server_lines() -> tuple[list[str], Problem]:
    """Whether the server answers, accepts this shell's credentials and serves this project's
    Prefect home."""
    chosen = get_current_settings().api.url
    url = chosen or server_api_url()
    where = url.removesuffix("/api")
    if not server_answers(url):
        if chosen:
            return [f"down at {where}, and PREFECT_API_URL points there: runs stop with an error"], True
        stale = f"; {pid_file()} is stale, the next start removes it" if pid_file().exists() else ""
        return [f"down at {where}: runs use a temporary server on the database below{stale}"], False
    pid = our_server_pid(clean=False)
    up = f"up at {where} (pid {pid}, started by the kit)" if pid else (
        f"up at {where} (not started by the kit: no live pid in {pid_file()})")
    # /health needs no credentials; the rest of the API does when the server has PREFECT_AUTH set.
    try:
        version = _api_get(f"{url}/admin/version")
        served_home = Path(_api_get(f"{url}/admin/settings")["home"]).resolve()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return [up, "problem: it refuses this shell's credentials (401): pass the "
                    "PREFECT_AUTH=user:pass it was started with"], True
        return [up, f"problem: its API answered {exc.code} ({exc.url})"], True
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [up, f"problem: its API did not answer as expected: {exc}"], True
    up += f", Prefect {version}"
    if served_home != home():
        return [up, f"problem: it serves another Prefect home, {served_home}: runs from here land in "
                f"its database, not in {home()}"], True
    return [up], False


def data_line() -> tuple[str, Problem]:
    raw, record = project.RAW_DATA, project.RAW_RECORD
    actual = md5_file(raw)
    if actual is None:
        return f"problem: {raw} missing: `make data` restores it", True
    expected = project.recorded_md5()
    if actual != expected:
        return f"problem: {raw} has md5 {actual}, not the {expected} recorded in {record}", True
    return f"{raw} present, md5 {actual} matches {record}", False


def settings_rows(prefect_view: subprocess.Popen, dvc_config: subprocess.Popen) -> tuple[list[tuple[str, str, str]], Problem]:
    """(name, value, source) of each setting that is set, Prefect's then DVC's."""
    rows, problem = [("setting", "value", "source")], False
    out, _ = prefect_view.communicate()
    try:
        rows += [(s["name"], s["value"], s["source"]) for s in json.loads(out)["settings"]]
    except (ValueError, KeyError, TypeError):
        print(f"problem: `prefect config view --show-sources -o json` gave no settings: {out.strip()[-300:]}")
        problem = True
    if "PREFECT_API_URL" not in {name for name, _, _ in rows}:
        rows.append(("PREFECT_API_URL", "(not set)",
                     f"scripts/kit/connection.py uses {server_api_url()} when it answers, else a temporary server"))
    for name in ("DO_NOT_TRACK", "DVC_NO_ANALYTICS"):
        rows.append((name, os.environ.get(name, ""), "env (scripts/kit/project.py sets 1 where unset)"))
    out, _ = dvc_config.communicate()
    for line in out.splitlines():  # "origin<TAB>section.key=value"
        origin, _, setting = line.partition("\t")
        name, _, value = setting.partition("=")
        rows.append((f"dvc {name}", value, origin))
    return rows, problem


def main() -> int:
    prefect_view = _spawn(sys.executable, "-m", "prefect", "config", "view", "--show-sources", "-o", "json")
    dvc_config = _spawn(sys.executable, "-m", "dvc", "config", "--list", "--show-origin")
    dvc_status = _spawn(sys.executable, "-m", "dvc", "status")
    server, server_bad = server_lines()
    data, data_bad = data_line()
    db = database()
    if Path(db).is_file():
        db += f" ({Path(db).stat().st_size / 1e6:.1f} MB)"
    elif db.startswith("/"):
        db += " (not created yet: the first run or server start creates it)"

    settings, settings_bad = settings_rows(prefect_view, dvc_config)
    print("Settings, from `prefect config view --show-sources` and `dvc config --list --show-origin`;")
    print("unlisted ones have their defaults.")
    name_width = max(len(name) for name, _, _ in settings)
    value_width = max(len(str(value)) for _, value, _ in settings)
    for name, value, source in settings:
        print(f"  {name:<{name_width}}  {value!s:<{value_width}}  {source}")

    status_out, _ = dvc_status.communicate()
    status_lines = status_out.strip().splitlines()
    if dvc_status.returncode:
        status_lines.insert(0, f"problem: `dvc status` exited {dvc_status.returncode}:")
    rows = {
        "server": server,
        "database": db,
        "log": str(log_file()),
        "versions": versions(),
        "data": data,
        "dvc status": status_lines or [""],
    }
    for key, value in rows.items():
        lines = value if isinstance(value, list) else [value]
        print(f"{key:<11}{lines[0]}", *(f"{'':<11}{line}" for line in lines[1:]), sep="\n")
    problems = server_bad + data_bad + (dvc_status.returncode != 0) + settings_bad
    if problems:
        print(f"{problems} problem(s) above.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
