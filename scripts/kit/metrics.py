"""The pipeline's metrics: read from their file (or git HEAD's copy), shown as a fixed-width
table with the change against baselines, and published as Prefect's table artifact under one key
(`ARTIFACT_KEY`), with the change against the previous published run. The tables are built here,
from plain values, so they are tested without Prefect."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

from kit.dotted import flatten

# One key for every run of every flow: the UI's Artifacts page keeps the history under it.
ARTIFACT_KEY = "pipeline-metrics"
DIGITS = 4  # decimals the tables show


class MetricsError(ValueError):
    """A metrics file is missing or is not a JSON object of numbers; one line naming it."""


def read_metrics(path: Path) -> dict[str, float]:
    path = Path(path)
    try:
        return parse_metrics(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise MetricsError(f"{path}: no metrics file; run the pipeline first") from None


def parse_metrics(text: str, source: str) -> dict[str, float]:
    """A JSON object of numbers; nested objects, as DVC allows, are flattened to dotted names."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{source}: not valid JSON ({exc})") from None
    flat = flatten(data) if isinstance(data, dict) else None
    if not flat or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat.values()):
        raise MetricsError(f"{source}: expected a JSON object of numbers")
    return flat


def committed_metrics(path: Path) -> dict[str, float] | None:
    """The metrics file as committed at git HEAD, or None where there is no such version."""
    path = Path(path).resolve()
    try:
        text = subprocess.run(
            ["git", "show", f"HEAD:./{path.name}"],
            cwd=path.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return parse_metrics(text, f"HEAD:{path.name}")


def format_table(values: dict[str, float], baselines: dict[str, dict[str, float]] | None = None) -> str:
    """A fixed-width table: metric, value and, for each baseline (by its column's title, e.g.
    "vs HEAD"), the change against it."""
    baselines = baselines or {}
    head = f"{'metric':<10} {'value':>8}" + "".join(f" {title:>12}" for title in baselines)
    rows = [head, "-" * len(head)]
    for name, value in sorted(values.items()):
        row = f"{name:<10} {value:>8.4f}"
        for baseline in baselines.values():
            before = baseline.get(name)
            row += f" {value - before:>+12.4f}" if before is not None else f" {'new':>12}"
        rows.append(row)
    return "\n".join(rows)


def artifact_table(values: dict[str, float], previous: dict[str, float] | None) -> list[dict[str, object]]:
    """The artifact's rows: metric, value, the previous run's value and the change.

    Values stay numbers (`artifact_values` reads them back next run), rounded to 4 decimals as
    the terminal table shows them (the metrics file keeps them whole); the change is text, signed
    like the terminal table's, or "new" for a metric the previous run did not publish.
    """
    rows = []
    for name, value in sorted(values.items()):
        before = (previous or {}).get(name)
        change = "" if previous is None else "new" if before is None else f"{value - before:+.4f}"
        rows.append({"metric": name, "value": round(value, DIGITS), "previous": before, "change": change})
    return rows


def artifact_values(data: object) -> dict[str, float] | None:
    """The metric values of a published artifact (its `data`, JSON text of `artifact_table`'s
    rows), or None where it holds something else, e.g. another program's artifact under the key."""
    try:
        rows = json.loads(data) if isinstance(data, str) else data
        values = {row["metric"]: row["value"] for row in rows}
    except (TypeError, ValueError, KeyError):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
        return None
    return values


def artifact_description(source: str, previous_at: datetime | None) -> str:
    """The artifact's markdown description: where the values come from and what they compare to."""
    text = f"**Pipeline metrics** from `{source}`."
    if previous_at is None:
        return text + " No earlier published metrics to compare with."
    return text + f" *change* is against the previous published run ({previous_at:%Y-%m-%d %H:%M:%S %Z})."
