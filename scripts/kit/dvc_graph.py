"""DVC's pipeline graph, read in-process: every stage of every dvc.yaml (foreach and matrix
expanded) and every .dvc data source, its upstream stages, and which ones are stale, decided by
DVC's own `Stage.changed()` as `dvc repro` decides it (Option C's plan)."""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path

from kit import dvc_internals as dvc


@dataclass(frozen=True)
class Plan:
    order: list[str]  # stage addresses, each after the stages it depends on
    upstream: dict[str, list[str]]  # the stages whose outputs each stage reads
    stale: dict[str, bool]  # whether `dvc repro` would run it
    frozen: frozenset[str]  # `dvc freeze`: never rerun, and not blocked by its upstream


def read_plan(repo: Path) -> Plan:
    """The graph, and what is stale: a stage whose own deps, outs or command changed, or whose
    upstream is stale (it will run first and may change its inputs). A frozen stage is stale
    only when its outputs are missing or changed, as in `dvc repro`.

    Holds the repository's lock while it looks, as `dvc status` does, so it runs before any
    stage does and never beside one.
    """
    with dvc.open_repo(repo) as dvc_repo, dvc.repository_lock(dvc_repo):
        upstream, changed, frozen = dvc.stage_graph(dvc_repo)
    order = list(TopologicalSorter(upstream).static_order())
    stale: dict[str, bool] = {}
    for a in order:
        stale[a] = (a not in frozen and any(stale[u] for u in upstream[a])) or changed[a]
    return Plan(order=order, upstream=upstream, stale=stale, frozen=frozen)
