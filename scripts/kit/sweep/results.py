"""A sweep's results: one row per trial (its params, metrics, state, seconds and where it ran),
ranked by the objective, as a table for Prefect's artifact and for the terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kit.sweep.spec import Point


@dataclass(frozen=True)
class Row:
    name: str
    values: dict[str, Any]  # the point's params, by dotted key
    state: str  # Completed, Cached or Failed
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    worker: str = ""
    error: str = ""

    @classmethod
    def of(cls, point: Point, state: str, metrics: dict[str, float], seconds: float, worker: str) -> Row:
        return cls(point.name, point.values, state, metrics, seconds, worker)

    @classmethod
    def failed(cls, point: Point, exc: BaseException) -> Row:
        first_line = next(iter(str(exc).strip().splitlines()), "")
        return cls(point.name, point.values, "Failed", error=f"{type(exc).__name__}: {first_line}")

    def as_dict(self, metric_names: list[str], digits: int | None = None) -> dict[str, Any]:
        """The row with the same columns as every other; `digits`: metrics rounded, as the
        artifact shows them (the results file keeps them whole)."""
        metrics = {name: self.metrics.get(name) for name in metric_names}
        if digits is not None:
            metrics = {name: None if v is None else round(v, digits) for name, v in metrics.items()}
        seconds = self.seconds if digits is None or self.seconds is None else round(self.seconds, 2)
        return {"trial": self.name, **self.values, **metrics, "state": self.state,
                "seconds": seconds, "worker": self.worker, "error": self.error}

    def summary(self, objective: str) -> str:
        """One line: the trial and its objective, or how it failed."""
        if self.state == "Failed":
            return f"{self.name} Failed ({self.error})"
        value = self.metrics.get(objective)
        return f"{self.name} {self.state}" + (f", {objective}={value:.4f}" if value is not None else "")


def metric_names(rows: list[Row], objective: str) -> list[str]:
    """The metrics columns: the objective, then every other metric a trial reported."""
    return [objective, *sorted({name for row in rows for name in row.metrics} - {objective})]


def ranked(rows: list[Row], objective: str) -> list[Row]:
    """Best objective first (ties by name); failed trials last."""
    return sorted(rows, key=lambda row: (row.state == "Failed", -row.metrics.get(objective, 0), row.name))


def format_table(rows: list[Row], objective: str) -> str:
    """The ranked rows as a plain-text table."""
    names = metric_names(rows, objective)
    header = ["trial", *names, "state", "seconds", "worker", "error"]
    lines = [header]
    for row in rows:
        metrics = [f"{row.metrics[name]:.4f}" if name in row.metrics else "-" for name in names]
        seconds = "-" if row.seconds is None else f"{row.seconds:.2f}"
        lines.append([row.name, *metrics, row.state, seconds, row.worker or "-", row.error])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {*range(1, len(names) + 1), len(names) + 2}  # the metrics and seconds
    text = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in
                      enumerate(zip(line, widths))).rstrip() for line in lines]
    return "\n".join(text)
