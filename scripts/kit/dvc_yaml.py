"""The pipeline as dvc.yaml declares it: each stage's command, deps, outs and params, the Python
function that runs it (from mltoy's stage table), and the metrics file the runs report.

Option B and the sweep run the stages from here, and the flows check their inputs and find their
metrics here, so a path changed in dvc.yaml changes everywhere: there is no second copy to drift.
A stage's cmd is parsed by the stage CLI's own parser, whose options land in the stage function's
argument names.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Iterable

import yaml

from mltoy import cli
from mltoy.stages import STAGES, StageFunction

CLI = ["python", "-m", "mltoy.cli"]  # how dvc.yaml runs a stage of the table


@dataclass(frozen=True)
class Stage:
    """One stage of dvc.yaml that runs a function of mltoy's stage table."""

    name: str
    function: StageFunction
    paths: dict[str, Path]  # the function's path arguments, absolute
    deps: tuple[str, ...]  # relative to the repository, as in dvc.yaml
    outs: tuple[str, ...]
    params: tuple[str, ...]  # dotted keys, e.g. "train.C"

    def run(self, params) -> object:
        """Call the stage's function on its paths (what its cmd would do, in this process)."""
        return self.function(self.paths, params)


def is_kit_pipeline(repo: Path) -> bool:
    """Whether `repo` runs this kit's stages (and so takes its params schema and data checks)."""
    return (repo / "mltoy" / "pipeline.py").is_file()


def read_stages(repo: Path) -> dict[str, Stage]:
    """The stages of `repo`'s dvc.yaml, in its order; each must run `python -m mltoy.cli`."""
    stages = {}
    for name, spec in _read(repo)["stages"].items():
        found = stage_function(spec["cmd"])
        if found is None:
            raise ValueError(f"dvc.yaml: stage {name!r} does not run a stage of mltoy's table: {spec['cmd']}")
        function, paths = found
        for path in [*paths.values(), *spec.get("deps", [])]:
            if not (repo / path).resolve().is_relative_to(repo.resolve()):
                raise ValueError(f"dvc.yaml: stage {name!r}: {path} is outside the repository")
        stages[name] = Stage(
            name=name,
            function=function,
            paths={k: repo / v for k, v in paths.items()},
            deps=tuple(spec.get("deps", [])),
            outs=tuple(_out_paths(spec, "outs", "metrics", "plots")),
            params=tuple(spec.get("params", [])),
        )
    return stages


def stage_function(cmd: str | list[str]) -> tuple[StageFunction, dict[str, Path]] | None:
    """The function of mltoy's stage table that a stage's cmd runs (`python -m mltoy.cli NAME
    --FLAG PATH ...`), and its path arguments as the cmd gives them; None for any other cmd."""
    argv = shlex.split(cmd) if isinstance(cmd, str) else None
    if not argv or argv[:3] != CLI or len(argv) < 4 or argv[3] not in STAGES:
        return None
    return STAGES[argv[3]], cli.stage_paths(cli.build_parser().parse_args(argv[3:]))


def upstream(stages: Iterable[Stage]) -> dict[str, list[str]]:
    """Each stage's upstream (the stages that write a file it reads), each stage after its own."""
    stages = list(stages)
    writer = {out: stage.name for stage in stages for out in stage.outs}
    graph = {s.name: list(dict.fromkeys(writer[d] for d in s.deps if d in writer)) for s in stages}
    return {name: graph[name] for name in TopologicalSorter(graph).static_order()}


def metrics_file(repo: Path) -> Path | None:
    """The metrics file the runs report: the first that `repo`'s dvc.yaml declares, in any stage
    (any DVC repository), or None."""
    try:
        stages = _read(repo).get("stages", {})
    except FileNotFoundError:
        return None
    declared = [repo / path for spec in stages.values() for path in _out_paths(spec, "metrics")]
    return declared[0] if declared else None


def _read(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.yaml").read_text()) or {}


def _out_paths(spec: dict, *kinds: str) -> list[str]:
    """The paths of a stage's outputs of these kinds (an entry is a path, or {path: options})."""
    return [next(iter(o)) if isinstance(o, dict) else o for kind in kinds for o in spec.get(kind, [])]
