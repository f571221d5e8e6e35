"""A sweep as a picture: the objective against each swept key, one panel per key and one series per
value of the other keys, as a Vega-Lite spec (kit/plots.py draws it)."""

from __future__ import annotations

from typing import Any

from kit.sweep.results import Row

MAX_SERIES = 10  # more series than this (a random search) are points without lines or legend
LOG_RANGE = 100  # a numeric key whose values span this factor or more gets a log axis


def shown(value: Any) -> Any:
    """A value as the chart takes it: booleans as words (Vega would draw them as 0 and 1)."""
    return str(value).lower() if isinstance(value, bool) else value


def short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def panel(rows: list[Row], key: str, others: list[str], objective: str) -> dict:
    values = [row.values[key] for row in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    x: dict[str, Any] = {"field": "x", "type": "quantitative" if numeric else "nominal", "title": key,
                         "axis": {"labelAngle": 0}}
    if numeric and min(values) > 0 and max(values) / min(values) >= LOG_RANGE:
        x["scale"] = {"type": "log"}
    data = [{"x": shown(row.values[key]), objective: row.metrics[objective], "trial": row.name,
             "series": ", ".join(f"{short(k)}={shown(row.values[k])}" for k in others) or "all"}
            for row in rows]
    series = {d["series"] for d in data}
    lines = len(series) <= MAX_SERIES and len(series) < len(data)  # a series of one point draws no line
    encoding: dict[str, Any] = {
        "x": x,
        "y": {"field": objective, "type": "quantitative", "scale": {"zero": False}, "title": objective},
    }
    if lines and others:
        encoding["color"] = {"field": "series", "type": "nominal", "title": ", ".join(map(short, others)),
                             "legend": {"orient": "bottom", "columns": 2}}
    return {
        "data": {"values": sorted(data, key=lambda d: (d["series"], str(d["x"])))},
        "mark": {"type": "line" if lines else "point", "point": True} if lines else {"type": "point", "filled": True},
        "encoding": encoding,
        "width": 260,
        "height": 200,
        "title": f"{objective} against {key}",
    }


def chart_spec(rows: list[Row], objective: str, title: str) -> dict | None:
    """The chart of the trials that reported the objective; None when none did."""
    done = [row for row in rows if objective in row.metrics]
    if not done:
        return None
    keys = list(dict.fromkeys(key for row in done for key in row.values))
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "hconcat": [panel(done, key, [k for k in keys if k != key], objective) for key in keys],
        "resolve": {"scale": {"color": "independent", "y": "shared"}},
        "config": {"background": "white"},
    }
