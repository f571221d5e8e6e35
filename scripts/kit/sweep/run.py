"""Running a sweep's trials: each stage run starts once the stage runs it reads from are done, is
shared by every trial whose stage run has the same key (DVC's run-cache rule), and is skipped
where a recorded run with that key left its outputs in the store. A trial is recorded as a DVC
experiment as soon as its last stage is done. Only md5s, metrics and timings pass through here.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pygit2

from kit.dotted import flatten
from kit.sweep import records
from kit.sweep.experiments import Experiments, ExperimentsError, set_params
from kit.sweep.plan import StageJob, StageSpec, is_code, sources, stage_key, stage_specs, upstream
from kit.sweep.results import Row
from kit.sweep.spec import Point
from kit.sweep.store import Store
from kit.sweep.trials import StageResult
from mltoy.files import md5_file


def sized(n: float) -> str:
    """A number of bytes, for people: 3.9 kB, 73.5 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


@dataclass
class Setup:
    """What every stage run of a sweep needs, made once before any runs."""

    repo: Path
    experiments: Experiments
    stages: list[StageSpec]
    sources: dict[str, tuple[str, int]]  # md5 and size of each file the stages read and none writes
    store: Store | None  # where the files live; None: they go through Dask with each task
    local: Store  # the repository's DVC cache
    tree: str | None  # md5 of a tar of HEAD's files, for stages run by their cmd
    metrics_file: str | None  # the metrics file dvc.yaml declares, from the root
    upstream: dict[str, list[str]] = field(default_factory=dict)

    def job(self, stage: StageSpec, point: Point, done: dict[str, StageResult]) -> StageJob:
        written = {path: out for result in done.values() for path, out in result.outs.items()}
        files = {dep: written[dep] if dep in written else self.sources[dep] for dep in stage.deps}
        inputs = {dep: md5 for dep, (md5, _) in files.items()}
        return StageJob(stage=stage, key=stage_key(stage, inputs, point.as_dict()), inputs=inputs,
                        params=point.params, params_text=set_params(self.experiments.params_text, point.values),
                        tree=None if stage.function else self.tree,
                        input_bytes=sum(size for dep, (_, size) in files.items() if not is_code(stage, dep)))

    def recorded(self, job: StageJob) -> StageResult | None:
        """The result of a recorded stage run with this key whose outputs are all in the store."""
        found = records.read(self.repo, job.key)
        store = self.store or self.local
        if found is None or not all(store.has(md5) for md5, _ in found[0].outs.values()):
            return None
        return found[0]

    def payload(self, job: StageJob) -> dict[str, bytes] | None:
        """Where no store is shared: the bytes of the files a stage run reads, by md5."""
        if self.store is not None:
            return None
        wanted = [md5 for path, md5 in job.inputs.items() if not is_code(job.stage, path)]
        return {md5: self.local.path(md5).read_bytes() for md5 in [*wanted, *filter(None, [job.tree])]}

    def keep(self, job: StageJob, result: StageResult) -> None:
        """A finished stage run: its outputs in the local cache where they came as bytes; its record."""
        for md5, data in result.payload.items():
            with tempfile.NamedTemporaryFile(dir=self.repo / ".dvc" / "tmp") as tmp:
                tmp.write(data)
                tmp.flush()
                self.local.put(Path(tmp.name), md5)
        previous = records.read(self.repo, job.key)
        records.write(self.repo, job.key, _lean(result), previous[1] if previous else {})


@dataclass
class Trial:
    point: Point
    done: dict[str, StageResult] = field(default_factory=dict)  # by stage name
    waiting: dict[str, str] = field(default_factory=dict)  # stage name -> the key of its run
    ran: bool = False  # whether any of its stage runs ran in this sweep (else: all were cached)
    row: Row | None = None


def setup(repo: Path, on_dask: bool, in_process: bool, metrics_file: str | None) -> tuple[Setup, list[str]]:
    """The sweep's setup, and what the sweep should say about it (a line each). Checks that what
    the trials read is as committed (an experiment holds HEAD's files beside the trial's)."""
    experiments = Experiments(repo)
    stages = stage_specs(experiments.specs, in_process)
    inputs = sources(stages)
    changed = experiments.uncommitted(["dvc.yaml", *inputs])
    if changed:
        raise ExperimentsError(f"{', '.join(changed)}: not as committed; experiments are recorded on "
                               "HEAD, so commit first (or stash)")
    local = Store(str(experiments.cache), "DVC's cache")
    found: dict[str, tuple[str, int]] = {}
    for path in inputs:
        if path in experiments.data:  # DVC's record says what it is: nothing is read
            _, md5, size, _ = experiments.data[path]
            if not local.has(md5):  # the file as committed, not in the cache yet: put it there
                local.put(repo / path, md5)
        elif (repo / path).is_file():  # code and small files git keeps
            md5, size = md5_file(repo / path), (repo / path).stat().st_size
        else:
            raise ExperimentsError(f"{path}: file not found; run `make data` to restore it")
        found[path] = (md5, size)
    notes = []
    store: Store | None = local
    if on_dask:
        if experiments.remote:
            name, url = experiments.remote
            store = Store(url, f"the DVC remote {name!r}")
            notes.append(f"Files go by md5 through {store.name} ({url}); the workers fetch from it and put there")
        else:
            store = None
            size = sum(size for path, (_, size) in found.items() if path in experiments.data)
            notes.append(f"No default DVC remote: each stage run's files go through Dask with it ({sized(size)} "
                         "of data to start with). `dvc remote add -d NAME URL` makes them go by md5")
    tree = None
    if any(stage.function is None for stage in stages):
        tree = _put_tree(experiments, local)
        notes.append(f"{', '.join(s.name for s in stages if s.function is None)}: run by their cmd, among HEAD's files")
    if store is not None and store is not local:
        for md5 in [found[path][0] for path in inputs if path in experiments.data] + ([tree] if tree else []):
            store.put(local.path(md5), md5)
    made = Setup(repo, experiments, stages, found, store, local, tree, metrics_file, upstream(stages))
    return made, notes


def run_trials(made: Setup, points: list[Point], submit: Callable[[StageJob, str], Any],
               outcome: Callable[[Any], StageResult | BaseException], record: Callable[[Trial], Row],
               as_completed: Callable, on_done: Callable[[Row], None] = lambda row: None) -> list[Row]:
    """Run every point's stages, sharing stage runs by key, and record each trial as it completes.
    `submit(job, label)` starts a stage run and returns its future; `outcome(future)` gives its
    result or exception; `record(trial)` records a finished trial; `on_done(row)` hears of each."""
    trials = [Trial(point) for point in points]
    running: dict[str, Any] = {}  # key -> future
    jobs: dict[str, StageJob] = {}
    waiting: dict[str, list[Trial]] = {}

    def finish(trial: Trial, row: Row) -> None:
        trial.row = row
        on_done(row)

    def advance(trial: Trial) -> None:
        progressed = True
        while progressed and trial.row is None:
            progressed = False
            for stage in made.stages:
                if stage.name in trial.done or stage.name in trial.waiting:
                    continue
                if not all(u in trial.done for u in made.upstream[stage.name]):
                    continue
                job = made.job(stage, trial.point, trial.done)
                if job.key not in running and (found := made.recorded(job)) is not None:
                    trial.done[stage.name] = found
                    progressed = True
                    continue
                trial.waiting[stage.name] = job.key
                waiting.setdefault(job.key, []).append(trial)
                if job.key not in running:
                    jobs[job.key] = job
                    running[job.key] = submit(job, label(stage, trial.point))
        if trial.row is None and len(trial.done) == len(made.stages):
            finish(trial, record(trial))

    for trial in trials:
        advance(trial)
    while running:
        future = next(as_completed(list(running.values())))
        key = next(k for k, f in running.items() if f is future)
        del running[key]
        result = outcome(future)
        if isinstance(result, StageResult):
            made.keep(jobs[key], result)
        for trial in waiting.pop(key):
            stage = next(name for name, k in trial.waiting.items() if k == key)
            del trial.waiting[stage]
            if trial.row is not None:
                continue
            if isinstance(result, BaseException):
                finish(trial, Row.failed(trial.point, result))
                continue
            trial.done[stage] = _lean(result)
            trial.ran = True
            advance(trial)
    return [trial.row for trial in trials if trial.row is not None]


def record_trial(made: Setup, trial: Trial) -> tuple[Row, str]:
    """Record a finished trial as a DVC experiment, from md5s only; its row and what happened."""
    md5s = {path: md5 for path, (md5, _) in made.sources.items()}
    sizes = {path: size for path, (_, size) in made.sources.items()}
    for result in trial.done.values():
        md5s |= {path: out[0] for path, out in result.outs.items()}
        sizes |= {path: out[1] for path, out in result.outs.items()}
    blobs = {}
    for stage in made.stages:
        kept_by_git = [path for path, cached in stage.outs.items() if not cached]
        if kept_by_git:
            blobs |= _blobs(made, trial.done[stage.name], made.job(stage, trial.point, trial.done).key, kept_by_git)
        for path in stage.outs:  # from the remote, as `dvc pull` would: `dvc exp apply` checks out from here
            _bring_home(made, trial.done[stage.name].outs[path][0])
    what = made.experiments.record(trial.point.name, trial.point.values, md5s, sizes, blobs)
    last = trial.done[made.stages[-1].name]
    metrics = next((r.metrics for r in trial.done.values() if r.metrics), {})
    seconds = round(sum(r.seconds for r in trial.done.values()), 3)
    return Row.of(trial.point, "Completed" if trial.ran else "Cached", metrics, seconds, last.worker), what


def _blobs(made: Setup, result: StageResult, key: str, paths: list[str]) -> dict[str, str]:
    """The git objects of a stage run's git-kept outputs: from its record when git still has
    them, else made from the file (streamed), which then goes into the record."""
    found = records.read(made.repo, key)
    known = found[1] if found else {}
    if all(path in known and made.experiments.has_blob(known[path]) for path in paths):
        return {path: known[path] for path in paths}
    for path in paths:
        md5 = result.outs[path][0]
        _bring_home(made, md5)
        known[path] = made.experiments.blob(made.local.path(md5))
    records.write(made.repo, key, found[0] if found else result, known)
    return {path: known[path] for path in paths}


def _bring_home(made: Setup, md5: str) -> None:
    """An object on the remote only, copied into the local cache (streamed, not held here)."""
    if made.store is None or made.local.has(md5):
        return
    with tempfile.TemporaryDirectory(dir=made.repo / ".dvc" / "tmp") as tmp:
        made.store.get(md5, Path(tmp) / "object")
        made.local.put(Path(tmp) / "object", md5)


def label(stage: StageSpec, point: Point) -> str:
    """A stage run's name in the UI: its stage and the values of the params it reads."""
    flat = flatten(point.as_dict())
    values = " ".join(f"{key.rpartition('.')[2]}={flat.get(key)}" for key in stage.params)
    return f"{stage.name} ({values})" if values else stage.name


def _lean(result: StageResult) -> StageResult:
    return StageResult(result.outs, result.metrics, result.seconds, result.worker)


def _put_tree(experiments: Experiments, local: Store) -> str:
    """HEAD's files as a tar in the store: the folder a cmd stage runs in, as in the workspace."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data, executable in _walk(experiments.git, experiments.baseline.tree, ""):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    with tempfile.NamedTemporaryFile(dir=experiments.root / ".dvc" / "tmp") as tmp:
        tmp.write(buffer.getvalue())
        tmp.flush()
        md5 = md5_file(Path(tmp.name))
        local.put(Path(tmp.name), md5)
    return md5


def _walk(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str):
    for entry in tree:
        if entry.type_str == "tree":
            yield from _walk(repo, repo[entry.id], f"{prefix}{entry.name}/")
        elif entry.type_str == "blob":
            yield f"{prefix}{entry.name}", repo[entry.id].data, entry.filemode == pygit2.GIT_FILEMODE_BLOB_EXECUTABLE
