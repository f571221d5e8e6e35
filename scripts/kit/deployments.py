"""The kit's deployments as prefect.yaml declares them (their names, their work pool), and the
schedule that the SCHEDULE knob asks for. Read by `make deploy`, `make worker` and `make serve`."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.client.schemas.schedules import CronSchedule

from kit.project import PREFECT_YAML, ROOT


def _deployments(root: Path) -> list[dict]:
    return yaml.safe_load((root / PREFECT_YAML).read_text())["deployments"]


def names(root: Path = ROOT) -> list[str]:
    """The deployments' names, as `prefect deploy --name` takes them."""
    return [d["name"] for d in _deployments(root)]


def work_pool(root: Path = ROOT) -> str:
    """The one work pool that every deployment runs on."""
    pools = {d["work_pool"]["name"] for d in _deployments(root)}
    if len(pools) != 1:
        raise SystemExit(f"error: {PREFECT_YAML}: the kit expects one work pool for all deployments, "
                         f"found {sorted(pools)}")
    return pools.pop()


def schedule(text: str) -> dict[str, int | str]:
    """SCHEDULE as Prefect's deployment options take it: "" -> no schedule, "3600" -> every
    3600 s, "0 3 * * *" -> cron, in the server's time zone (UTC unless set)."""
    text = text.strip()
    if not text:
        return {}
    if text.isdigit() and int(text) > 0:
        return {"interval": int(text)}
    try:
        CronSchedule(cron=text)
    except ValueError:
        raise SystemExit(f"error: SCHEDULE={text!r} is neither a number of seconds nor a cron string "
                         "(minute hour day month weekday, e.g. '0 3 * * *')") from None
    return {"cron": text}
