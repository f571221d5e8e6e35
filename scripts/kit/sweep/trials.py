"""One stage run of a trial, in a temporary folder of its own: its inputs brought from the store
by md5, the stage run (the kit's function in a process of its own, or the stage's cmd), its
outputs hashed and put in the store. What comes back is md5s, sizes, metrics and timings.

A stage run is a function of explicit inputs, so it runs the same on a thread of the sweep's
process or on a Dask worker on another machine. It never reads the caller's working directory
and never writes outside its folder and the store. What a worker must bring itself is the code
of a function stage: the same files, which the run checks against the md5s it was sent.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

from kit.project import ROOT
from kit.sweep.plan import StageJob, is_code
from kit.sweep.store import Store
from mltoy import InputError
from mltoy.files import md5_file

# A stage reading more than this runs in a process of its own, whose memory is given back when it
# ends (2M rows: two trains side by side took 1 GB in one process). A smaller one runs on the
# calling thread: a process costs 0.1 to 0.5 s to start and end, more than such a stage takes.
ISOLATE_BYTES = 16_000_000


class WrongCode(RuntimeError):
    """The worker's code is not the code the sweep's experiments record."""


class StageFailed(RuntimeError):
    """A stage's command failed, or did not write an output it declares."""


@dataclass(frozen=True)
class StageResult:
    outs: dict[str, tuple[str, int]]  # each output's md5 and size, by path from the root
    metrics: dict[str, float]  # the metrics file's values, where the stage wrote it
    seconds: float
    worker: str  # where it ran: the Dask worker's name, else the host's
    payload: dict[str, bytes] = field(default_factory=dict)  # the outputs' bytes, where no store is shared


def run_stage_job(job: StageJob, store: Store | None, payload: dict[str, bytes] | None = None, *,
                  metrics_file: str | None = None, env: dict[str, str] | None = None,
                  isolate: bool = True, folder_in: Path | None = None) -> StageResult:
    """Run one stage. Its inputs come from `store` by md5, or from `payload` (md5 -> bytes) where
    no store is shared (a Dask cluster and no DVC remote); its outputs go back the same way. With
    `isolate`, a function stage that reads more than ISOLATE_BYTES runs in a child process, so the
    caller's memory does not grow with the data (on a Dask worker, the worker is that process).
    `env`: the environment a cmd runs in (the user's, for another repository); `folder_in`: where
    to make the stage's folder."""
    start = time.perf_counter()
    stage = job.stage
    folder = Path(tempfile.mkdtemp(prefix="kit-trial-", dir=folder_in))
    try:
        def bring(md5: str, dest: Path, link: bool) -> None:
            if store is None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(payload[md5])
            else:
                store.get(md5, dest, link=link)

        if job.tree:  # a cmd runs among the repository's files, as in the workspace
            bring(job.tree, folder / ".kit-tree.tar", link=True)
            with tarfile.open(folder / ".kit-tree.tar") as tar:
                tar.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
            (folder / ".kit-tree.tar").unlink()
        for path, md5 in job.inputs.items():
            if is_code(stage, path):
                check_code(path, md5)  # imported, not read from the folder
            elif not (folder / path).is_file() or md5_file(folder / path) != md5:
                # Function stages only read their inputs: a link is safe. A cmd might write one.
                bring(md5, folder / path, link=stage.function is not None)
        try:
            if stage.function is not None:
                paths = {name: folder / path for name, path in stage.paths.items()}
                if isolate and job.input_bytes > ISOLATE_BYTES:
                    call_in_child(stage.function, paths, job.params)
                else:
                    stage.function(paths, job.params)
            else:
                (folder / "params.yaml").write_text(job.params_text)
                run_cmd(job, folder, env)
        except InputError as exc:  # name the file as the repository does, not by the stage's folder
            raise type(exc)(str(exc).replace(f"{folder}{os.sep}", "")) from None
        outs, back = {}, {}
        for path in stage.outs:
            if not (folder / path).is_file():
                raise StageFailed(f"stage {stage.name!r} did not write {path}, which dvc.yaml declares")
            md5 = md5_file(folder / path)
            outs[path] = (md5, (folder / path).stat().st_size)
            if store is None:
                back[md5] = (folder / path).read_bytes()
            else:
                store.put(folder / path, md5)
        metrics = read_metrics(folder / metrics_file) if metrics_file in outs else {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return StageResult(outs, metrics, round(time.perf_counter() - start, 3), worker_name(), back)


def run_cmd(job: StageJob, folder: Path, env: dict[str, str] | None) -> None:
    """The stage's command lines, each by a shell in its working folder, as `dvc repro` runs
    them (with DVC_ROOT, DVC_STAGE), stopping at the first that fails."""
    env = dict(env or os.environ, DVC_ROOT=str(folder), DVC_STAGE=job.stage.name)
    for line in job.stage.cmd:
        done = subprocess.run(line, shell=True, cwd=folder / job.stage.wdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stdout.strip().splitlines()[-10:]).replace(f"{folder}{os.sep}", "")
            raise StageFailed(f"stage {job.stage.name!r}: `{line}` exited with code {done.returncode}:\n{tail}")


def call_in_child(function, paths: dict[str, Path], params) -> None:
    """Call a stage's function in a child process forked from Python's forkserver, which has the
    stage's modules imported already (pandas, scikit-learn: no import per stage), so that the
    memory the stage takes is given back when it ends. Its exception, if any, is raised here."""
    context = forkserver(function.function.partition(":")[0])
    ours, theirs = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(theirs, function, paths, params), daemon=True)
    child.start()
    theirs.close()
    try:
        ok, value = ours.recv()
    except EOFError:
        child.join()
        raise StageFailed(f"the process running the stage died (exit code {child.exitcode})") from None
    child.join()
    if not ok:
        raise value


def _child(conn, function, paths, params) -> None:
    # What the forkserver imported is never garbage: the collector need not walk it (a collection
    # over Prefect, pandas and scikit-learn took 0.4 s a stage, and copied every page it touched).
    gc.freeze()
    try:
        function(paths, params)
        conn.send((True, None))
    except BaseException as exc:  # sent to the parent, which raises it
        conn.send((False, exc))


def forkserver(module: str):
    """Python's forkserver, started once, with the stage functions' module imported in it, and
    the modules the running script imports: each child runs the script's top again (Python 3.11
    does so whatever the preload says), which is then cheap."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module, *_script_imports()])
    return context


def _script_imports() -> list[str]:
    main = vars(sys.modules["__main__"]).values()
    found = {value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
             for value in main}
    return sorted(name for name in found if isinstance(name, str) and name in sys.modules and name != "__main__")


def read_metrics(path: Path) -> dict[str, float]:
    from kit.metrics import MetricsError, parse_metrics

    try:
        return parse_metrics(path.read_text(encoding="utf-8"), path.name)
    except MetricsError:
        return {}


def check_code(path: str, md5: str) -> None:
    """A file of the kit's code that a stage imports must be this checkout's own, byte for byte:
    the experiment records the md5 of the code it was sent, and the stage runs the code it imports."""
    mine = ROOT / path
    if not mine.is_file() or md5_file(mine) != md5:
        raise WrongCode(f"{worker_name()} runs another {path} than the sweep's (its copy: {mine}); "
                        "update its checkout to the sweep's commit and restart it")


def worker_name() -> str:
    """The Dask worker running this, by its name (its address unless given one); else the host."""
    distributed = sys.modules.get("distributed")  # every Dask worker has it loaded
    try:
        return str(distributed.get_worker().name) if distributed else socket.gethostname()
    except ValueError:  # distributed is loaded, but this is not one of its workers
        return socket.gethostname()

