"""Failure hooks for flows and tasks: log what failed and, with NOTIFY_URL set, POST it as JSON."""

from __future__ import annotations

import json
import os
import urllib.request

from prefect import get_run_logger


def on_failure(obj, run, state) -> None:
    """Log what failed and, with NOTIFY_URL set, POST it; a hook that fails itself only logs
    that, and never hides the original failure."""
    kind = "Task" if hasattr(run, "task_key") else "Flow"
    message = state.message or state.name
    logger = get_run_logger()
    logger.error("%s %r failed: %s", kind, obj.name, message)
    url = os.environ.get("NOTIFY_URL")
    if not url:
        return
    body = {"kind": kind.lower(), "name": obj.name, "run": run.name, "run_id": str(run.id),
            "state": state.name, "message": message}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except OSError as exc:
        logger.warning("Could not notify %s: %s", url, exc)
