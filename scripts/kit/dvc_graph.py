"""DVC's pipeline graph: every stage of every dvc.yaml (foreach and matrix expanded) and every
.dvc data source, its upstream stages, and which ones are stale, decided by DVC's own
`Stage.changed()` as `dvc repro` decides it (Option C's plan). Read in a child of the warm DVC
process (kit/warm_dvc.py), which has DVC imported already, else in this process."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from graphlib import TopologicalSorter
from pathlib import Path

from kit import warm_dvc


@dataclass(frozen=True)
class Plan:
    order: list[str]  # stage addresses, each after the stages it depends on
    upstream: dict[str, list[str]]  # the stages whose outputs each stage reads
    stale: dict[str, bool]  # whether `dvc repro` would run it
    frozen: frozenset[str]  # `dvc freeze`: never rerun, and not blocked by its upstream


class PlanFailed(RuntimeError):
    """DVC could not read the pipeline (a broken dvc.yaml, say): what it said."""


def read_plan(repo: Path) -> Plan:
    """The graph, and what is stale: a stage whose own deps, outs or command changed, or whose
    upstream is stale (it will run first and may change its inputs). A frozen stage is stale
    only when its outputs are missing or changed, as in `dvc repro`.

    Forked from the warm DVC, this costs the run 0.2 to 0.3 s; in this process, 0.8 s, most of
    it importing DVC."""
    command = warm_dvc.run_warm(repo, [str(repo)], repo, dict(os.environ), command="plan")
    if command is None:
        return plan_here(repo)
    with command:
        lines = command.stdout.read().splitlines()
    if command.returncode != 0 or not lines:
        said = "; ".join(line.removeprefix("ERROR: ") for line in lines[-3:])
        raise PlanFailed(f"DVC could not read the pipeline: {said or f'exit status {command.returncode}'}")
    fields = json.loads(lines[-1])
    return Plan(**dict(fields, frozen=frozenset(fields["frozen"])))


def print_plan(args: list[str]) -> int:
    """The warm process's `plan` command: the plan of the repository at ARGS[0], as one line of
    JSON, last."""
    try:
        plan = plan_here(Path(args[0]))
    except Exception as exc:  # a broken dvc.yaml, say: DVC's own message, as its CLI prints it
        print(f"ERROR: {exc}")
        return 1
    print(json.dumps(dict(asdict(plan), frozen=sorted(plan.frozen))))
    return 0


def plan_here(repo: Path) -> Plan:
    """read_plan, in this process. Holds the repository's lock while it looks, as `dvc status`
    does, so it runs before any stage does and never beside one."""
    from kit import dvc_internals as dvc

    with dvc.open_repo(repo) as dvc_repo, dvc.repository_lock(dvc_repo):
        upstream, changed, frozen = dvc.stage_graph(dvc_repo)
    order = list(TopologicalSorter(upstream).static_order())
    stale: dict[str, bool] = {}
    for a in order:
        stale[a] = (a not in frozen and any(stale[u] for u in upstream[a])) or changed[a]
    return Plan(order=order, upstream=upstream, stale=stale, frozen=frozen)
