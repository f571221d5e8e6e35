"""Nested mappings by dotted keys (`train.C`), the way DVC names params and metrics."""

from __future__ import annotations

from typing import Any


def flatten(nested: dict, prefix: str = "") -> dict[str, Any]:
    """{'train': {'C': 0.1}} -> {'train.C': 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def assign(nested: dict, key: str, value: Any) -> None:
    """Set `key` ('train.C') in a nested mapping whose sections exist."""
    *sections, leaf = key.split(".")
    for part in sections:
        nested = nested[part]
    nested[leaf] = value
