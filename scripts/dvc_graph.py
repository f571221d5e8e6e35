"""DVC's pipeline graph, read in-process through DVC's API: every stage of every dvc.yaml (foreach
and matrix expanded) and every .dvc data source, its upstream stages, and which ones are stale,
decided by DVC's own `Stage.changed()` as `dvc repro` decides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path

from dvc.lock import LockError
from dvc.repo import Repo
from dvc.stage import PipelineStage


class RepoBusy(RuntimeError):
    """Another DVC command holds the repository's lock; worth a retry."""

    transient = True


@dataclass(frozen=True)
class Plan:
    order: list[str]  # stage addresses, each after the stages it depends on
    upstream: dict[str, list[str]]  # the stages whose outputs each stage reads
    stale: dict[str, bool]  # whether `dvc repro` would run it
    frozen: frozenset[str]  # `dvc freeze`: never rerun, and not blocked by its upstream


def address(stage) -> str:
    """The name `dvc repro` takes from the repository's root: `train`, `eval@fold1`,
    `sub/dvc.yaml:train`, `data/raw/iris.csv.dvc`. (DVC's own `addressing` is relative to the
    process's folder, which is not the repository's.)"""
    if not isinstance(stage, PipelineStage):
        return stage.path_in_repo
    return stage.name if stage.path_in_repo == "dvc.yaml" else f"{stage.path_in_repo}:{stage.name}"


def read_plan(repo: Path) -> Plan:
    """The graph, and what is stale: a stage whose own deps, outs or command changed, or whose
    upstream is stale (it will run first and may change its inputs). A frozen stage is stale
    only when its outputs are missing or changed, as in `dvc repro`.

    Holds the repository's lock while it looks, as `dvc status` does, so it runs before any
    stage does and never beside one.
    """
    try:
        with Repo(str(repo)) as dvc_repo, dvc_repo.lock:
            graph = dvc_repo.index.graph  # edges point from a stage to the stages it reads from
            stages = {address(stage): stage for stage in graph}
            upstream = {a: sorted(address(u) for u in graph.successors(s)) for a, s in stages.items()}
            order = list(TopologicalSorter(upstream).static_order())
            stale: dict[str, bool] = {}
            for a in order:
                stage = stages[a]
                stale[a] = (not stage.frozen and any(stale[u] for u in upstream[a])) or stage.changed()
            frozen = frozenset(a for a, s in stages.items() if s.frozen)
    except LockError as exc:
        raise RepoBusy(f"{repo}: {exc}") from None
    return Plan(order=order, upstream=upstream, stale=stale, frozen=frozen)
