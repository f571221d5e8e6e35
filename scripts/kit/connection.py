"""The Prefect connection: runs go to the kit's server when it answers, else to a temporary one.

The client's API URL is written nowhere: it is derived from the same server settings that
`prefect server start` reads (prefect.toml, overridden by PREFECT_SERVER_API_*), and used only
when that server answers its health check. A PREFECT_API_URL the user set is used as it is.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Iterator

from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

# How long a server may take to answer its health check before the run goes on without it:
# nothing listening fails at once; a busy server can take a few seconds.
PROBE_SECONDS = 5.0


def server_api_url() -> str:
    """The API URL of the kit's server, from the same settings `prefect server start` reads."""
    api = get_current_settings().server.api
    host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host
    return f"http://{host}:{api.port}/api"


def server_answers(api_url: str, timeout: float = PROBE_SECONDS) -> bool:
    """True when a Prefect server answers its health check at `api_url` within `timeout`."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200 and json.load(resp) is True
    except (OSError, ValueError):
        return False


def api_request(url: str) -> urllib.request.Request:
    """A request to the Prefect API carrying this process's basic-auth credentials, if any."""
    request = urllib.request.Request(url)
    if secret := get_current_settings().api.auth_string:
        token = base64.b64encode(secret.get_secret_value().encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def credentials_refused(api_url: str) -> bool:
    """Whether the server refuses this process's credentials (401). Its health check skips auth,
    so the probe alone cannot tell."""
    try:
        urllib.request.urlopen(api_request(f"{api_url.rstrip('/')}/admin/version"), timeout=PROBE_SECONDS).close()
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        pass  # it answered its health check a moment ago; let Prefect report anything else
    return False


def _check_credentials(api_url: str) -> None:
    if credentials_refused(api_url):
        raise SystemExit(
            f"error: the Prefect server at {api_url.removesuffix('/api')} asks for credentials "
            "that this run does not have or that it refuses: set PREFECT_AUTH=user:pass "
            "(as given to make prefect-start)"
        )


@contextmanager
def prefect_connection(server_needed_by: str | None = None) -> Iterator[str | None]:
    """Send this process's runs to the kit's server when it answers, else to a temporary one;
    yields the server's API URL, or None for a temporary server.

    A PREFECT_API_URL that the user set on purpose and that does not answer is an error: falling
    back would hide their runs somewhere they do not look. So is no server at all when
    `server_needed_by` says what needs one.
    """
    chosen = get_current_settings().api.url
    if chosen:
        if not server_answers(chosen):
            raise SystemExit(
                f"error: PREFECT_API_URL={chosen} does not answer as a Prefect server; start it, "
                "or unset PREFECT_API_URL to let the kit pick its own server"
            )
        _check_credentials(chosen)
        yield chosen
        return
    url = server_api_url()
    if server_answers(url):
        _check_credentials(url)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
        return
    if server_needed_by:
        raise _no_server(server_needed_by, url)
    home = get_current_settings().home
    print(
        f"No Prefect server at {url.removesuffix('/api')}: this run uses a temporary one on the "
        f"project's database ({home}/prefect.db); `make prefect-start` shows it in the UI.",
        flush=True,
    )
    yield None


def require_server(what: str) -> str:
    """The API URL of the Prefect server that `what` needs: PREFECT_API_URL where set, else the
    kit's server; exit with one line when it does not answer. There is no temporary-server
    fallback here: deployments, schedules, workers and automations live on a server, and one that
    stops with this process would take them with it."""
    url = get_current_settings().api.url or server_api_url()
    if not server_answers(url):
        raise _no_server(what, url)
    _check_credentials(url)
    return url


def _no_server(what: str, url: str) -> SystemExit:
    return SystemExit(
        f"error: {what} needs a running Prefect server, and none answers at "
        f"{url.removesuffix('/api')}: start one with `make prefect-start` (with the same "
        "PREFECT_PORT), or set PREFECT_API_URL to your team's server"
    )


@contextmanager
def server_connection(what: str) -> Iterator[str]:
    """Connect this process to the server that `what` needs (require_server); yield its API URL."""
    url = require_server(what)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url
