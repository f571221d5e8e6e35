"""A sweep's stage runs: each stage of the repository's pipeline on one point, keyed by DVC's
run-cache rule (its command, the md5 of every file it reads, the values of the params it reads,
the outputs it declares). Two points whose stage runs have the same key share one run: a grid
over `train.*` runs prepare once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kit.dotted import flatten
from kit.dvc_yaml import stage_function
from mltoy.stages import StageFunction


@dataclass(frozen=True)
class StageSpec:
    """One stage of the pipeline, as a trial runs it."""

    name: str  # as `dvc repro` names it
    cmd: tuple[str, ...]  # its command lines, run in `wdir` by a shell
    wdir: str  # its working folder, from the repository's root
    deps: tuple[str, ...]  # the files it reads, from the root
    params: tuple[str, ...]  # the params.yaml keys it reads, dotted
    outs: dict[str, bool]  # the files it writes, from the root: whether DVC caches each (else git keeps it)
    # The kit's function for it (mltoy's stage table), run in-process rather than by its cmd, with
    # its path arguments from the root; None for any other stage.
    function: StageFunction | None = None
    paths: dict[str, str] = field(default_factory=dict)


def stage_specs(specs: list[dict], in_process: bool) -> list[StageSpec]:
    """DVC's stages (dvc_internals.stage_specs) as a trial runs them; with `in_process`, the
    stages of mltoy's table run as its functions (the kit's own pipeline)."""
    found = []
    for spec in specs:
        function = stage_function(spec["cmd"][0]) if in_process and len(spec["cmd"]) == 1 and spec["wdir"] == "." else None
        found.append(StageSpec(name=spec["name"], cmd=tuple(spec["cmd"]), wdir=spec["wdir"], deps=tuple(spec["deps"]),
                               params=tuple(spec["params"]), outs=dict(spec["outs"]),
                               function=function[0] if function else None,
                               paths={k: str(v) for k, v in function[1].items()} if function else {}))
    return found


@dataclass(frozen=True)
class StageJob:
    """What a task is sent to run one stage: everything by value or by md5, nothing by a path of
    the sweep's machine."""

    stage: StageSpec
    key: str
    inputs: dict[str, str]  # the md5 of each file the stage reads, by path from the root
    params: Any  # the point's params: mltoy's validated Params for the kit, else the nested dict
    params_text: str  # the point's params.yaml, as the stage's cmd reads it
    tree: str | None  # the md5 of a tar of HEAD's files, in the store: the folder a cmd runs in
    input_bytes: int = 0  # the size of the files it reads: a large stage runs in a process of its own


def stage_key(stage: StageSpec, inputs: dict[str, str], params: dict) -> str:
    """DVC's run-cache rule: a stage run is the same as another with the same command, the same
    files read (by md5), the same values of the params it reads, and the same outputs declared."""
    flat = flatten(params)
    spec = {"cmd": stage.cmd, "wdir": stage.wdir, "deps": inputs, "outs": sorted(stage.outs),
            "params": {key: flat.get(key) for key in stage.params}}
    return f"{stage.name}-{hashlib.md5(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()}"


def upstream(stages: list[StageSpec]) -> dict[str, list[str]]:
    """Each stage's upstream: the stages that write a file it reads."""
    writer = {out: stage.name for stage in stages for out in stage.outs}
    return {s.name: list(dict.fromkeys(writer[d] for d in s.deps if d in writer)) for s in stages}


def sources(stages: list[StageSpec]) -> list[str]:
    """The files the stages read that none of them writes (code, data), in order."""
    written = {out for stage in stages for out in stage.outs}
    return [dep for dep in dict.fromkeys(d for stage in stages for d in stage.deps) if dep not in written]


def is_code(stage: StageSpec, path: str) -> bool:
    """Whether `path` is code a function stage imports rather than a file it is handed."""
    return stage.function is not None and path not in stage.paths.values()

