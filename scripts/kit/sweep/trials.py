"""One trial: the pipeline's stage functions run in-process on one point's params, in a temporary
folder of its own, returning every output as bytes.

A trial is a function of explicit inputs, so it runs the same on a thread of the flow's process
or on a Dask worker on another machine: the stages' paths (from dvc.yaml), the params, and the
bytes of every file the pipeline reads that no stage writes (the raw data). It never reads the
caller's working directory and never writes outside its own folder. The one thing a worker must
bring itself is the code: the same mltoy, which the trial checks against the bytes it was sent.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mltoy
from kit.dvc_yaml import Stage
from mltoy import InputError
from mltoy.params import Params

CODE = Path(mltoy.__file__).resolve().parent  # the package the stage functions come from


class WrongCode(RuntimeError):
    """The worker's mltoy is not the one the sweep's experiments record."""


@dataclass(frozen=True)
class Pipeline:
    """What every trial of a sweep needs: the stages in the order they run, their paths relative
    to the repository, and the bytes of each file they read that no stage writes, by path."""

    stages: tuple[Stage, ...]
    inputs: dict[str, bytes]


@dataclass(frozen=True)
class TrialResult:
    outputs: dict[str, bytes]  # every stage's outputs, by path in the repository
    metrics: dict[str, float]
    worker: str  # where it ran: the Dask worker's name, else the host's
    seconds: float


def run_trial(params: Params, pipeline: Pipeline) -> TrialResult:
    """Run the pipeline's stages on `params` in a fresh temporary folder; return their outputs."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kit-trial-") as tmp:
        folder = Path(tmp)
        for path, data in pipeline.inputs.items():
            if is_code(path):
                check_code(path, data)  # imported, not read from the folder
                continue
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        metrics: dict[str, float] = {}
        try:
            for stage in pipeline.stages:
                metrics = run_stage(stage, folder, params) or metrics
        except InputError as exc:  # name the file as the repository does, not by the trial's folder
            raise type(exc)(str(exc).replace(f"{folder}{os.sep}", "")) from None
        outputs = {out: (folder / out).read_bytes() for stage in pipeline.stages for out in stage.outs}
    return TrialResult(outputs, metrics, worker_name(), round(time.perf_counter() - start, 3))


def run_stage(stage: Stage, folder: Path, params: Params) -> dict[str, float] | None:
    """One stage's function on its paths inside `folder`; evaluate returns the metrics."""
    return stage.function({name: folder / path for name, path in stage.paths.items()}, params)


def is_code(path: str) -> bool:
    return (CODE.parent / path).resolve().is_relative_to(CODE)


def check_code(path: str, data: bytes) -> None:
    """A file of mltoy that the sweep sent must be this process's own, byte for byte: the
    experiment records the md5 of the code it was sent, and the trial runs the code it imports."""
    mine = CODE.parent / path
    if not mine.is_file() or mine.read_bytes() != data:
        raise WrongCode(f"{worker_name()} runs another {path} than the sweep's (its copy: {mine}); "
                        "update its checkout to the sweep's commit and restart it")


def worker_name() -> str:
    """The Dask worker running this, by its name (its address unless given one); else the host."""
    distributed = sys.modules.get("distributed")  # every Dask worker has it loaded
    try:
        return str(distributed.get_worker().name) if distributed else socket.gethostname()
    except ValueError:  # distributed is loaded, but this is not one of its workers
        return socket.gethostname()
