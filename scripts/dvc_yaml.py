"""The kit's pipeline as dvc.yaml declares it: each stage's paths, deps, outs and params.

Option B runs the stages from here, and the flows check their inputs and find their metrics
here, so a path changed in dvc.yaml changes everywhere: there is no second copy to drift. Each
stage's cmd is parsed by the stage CLI's own parser, whose options land in the stage functions'
argument names.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from mltoy import cli


@dataclass(frozen=True)
class Stage:
    """One stage of the kit's dvc.yaml."""

    name: str
    paths: dict[str, Path]  # the stage function's path arguments, absolute
    deps: tuple[str, ...]  # relative to the repository, as in dvc.yaml
    outs: tuple[str, ...]
    params: tuple[str, ...]  # dotted keys, e.g. "train.C"


def is_kit_pipeline(repo: Path) -> bool:
    """Whether `repo` runs this kit's stages (and so takes its params schema and data checks)."""
    return (repo / "mltoy" / "pipeline.py").is_file()


def read_stages(repo: Path) -> dict[str, Stage]:
    """The stages of `repo`'s dvc.yaml, which must run mltoy.cli."""
    stages = {}
    for name, spec in _read(repo)["stages"].items():
        argv = shlex.split(spec["cmd"])
        if argv[:3] != ["python", "-m", "mltoy.cli"]:
            raise ValueError(f"dvc.yaml: stage {name!r} does not run mltoy.cli: {spec['cmd']}")
        paths = cli.stage_paths(cli.build_parser().parse_args(argv[3:]))
        for path in [*paths.values(), *spec.get("deps", [])]:
            if not (repo / path).resolve().is_relative_to(repo.resolve()):
                raise ValueError(f"dvc.yaml: stage {name!r}: {path} is outside the repository")
        stages[name] = Stage(
            name=name,
            paths={k: repo / v for k, v in paths.items()},
            deps=tuple(spec.get("deps", [])),
            outs=tuple(_out_paths(spec, "outs", "metrics", "plots")),
            params=tuple(spec.get("params", [])),
        )
    return stages


def pipeline_inputs(stages: Iterable[Stage]) -> list[str]:
    """The files the stages read that none of them writes (the code, the raw data), in order."""
    stages = list(stages)
    written = {out for stage in stages for out in stage.outs}
    return [dep for dep in dict.fromkeys(dep for stage in stages for dep in stage.deps) if dep not in written]


def metrics_file(repo: Path) -> Path | None:
    """The first metrics file that `repo`'s dvc.yaml declares, in any stage (any DVC repository),
    or None: what the "metrics summary" task shows."""
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
