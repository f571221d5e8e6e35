"""Trials recorded as DVC experiments: for each, one git commit on HEAD and one ref under
refs/exps, with its outputs in DVC's cache. The workspace, HEAD and the index are not touched.

An experiment that `dvc exp run` makes is exactly this: a commit whose parent is the baseline
(HEAD), holding the baseline's files with the trial's params.yaml, dvc.lock and git-tracked
outputs, and a ref `refs/exps/<baseline>/<name>`; its DVC-cached outputs are in .dvc/cache. So
`dvc exp show`, `apply`, `remove`, `branch` treat these as their own (tests/test_sweep.py proves
it). Writing them directly takes milliseconds a trial, in parallel with the next trials;
`dvc exp save` takes about 0.5 s each, one at a time, and needs the workspace to hold the trial.

Each dvc.lock is built by DVC's own serializer from the trial's hashes: byte for byte what
`dvc repro` would write for these params.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

import pygit2
import yaml
from dvc.repo import Repo

from dotted import assign, flatten
from mltoy import InputError
from project import PARAMS

# Who a commit is by when git has no identity configured (a fresh CI machine).
FALLBACK_SIGNATURE = ("kit sweep", "sweep@localhost")


class ExperimentsError(InputError):
    """The repository cannot take experiments as it is; the message is one line saying why."""


class Experiments:
    """The DVC experiments of the repository at `root` on its current HEAD; open it once, in the
    one process that writes them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.git = pygit2.Repository(str(self.root))
        if self.git.head_is_unborn:
            raise ExperimentsError(f"{self.root}: no commit yet; experiments are recorded on one")
        self.baseline = self.git.head.peel(pygit2.Commit)
        self.dvc = Repo(str(self.root))
        self.stages = pipeline_stages(self.dvc)
        self.params_text = (self.root / PARAMS).read_text(encoding="utf-8")

    def uncommitted(self, paths: Iterable[str]) -> list[str]:
        """Those of `paths` (dvc.yaml, code, DVC-tracked data) that differ from HEAD. Experiments
        hold HEAD's files beside the trial's, so the trials must run on those very files."""
        records = data_records(self.dvc)
        changed = []
        for path in paths:
            if path in records:  # data that DVC tracks: its .dvc file, and the data against it
                record, data_changed = records[path]
                if self.git.status_file(record) or data_changed:
                    changed.append(path)
            elif self.git.status_file(path):
                changed.append(path)
        return changed

    def cached(self, md5s: Iterable[str]) -> bool:
        """Whether DVC's cache holds every one of these objects."""
        return all(cache_path(self.dvc, md5).is_file() for md5 in md5s)

    def read_cached(self, md5: str) -> bytes:
        return cache_path(self.dvc, md5).read_bytes()

    def record(self, name: str, values: dict[str, Any], outputs: dict[str, bytes],
               inputs: dict[str, bytes]) -> str:
        """Record a trial as the experiment `name`: `values` are its params (dotted keys),
        `outputs` the bytes of every stage's outputs and `inputs` of the files they read that no
        stage writes, by path. Every output goes to DVC's cache (also those git keeps, so that a
        later sweep can record the trial again from there). Returns what happened: "recorded",
        "unchanged" (this very experiment was there) or "replaced"."""
        md5s = {path: cache_put(self.dvc, data) for path, data in outputs.items()}
        md5s |= {path: hashlib.md5(data).hexdigest() for path, data in inputs.items()}
        sizes = {path: len(data) for path, data in (outputs | inputs).items()}
        params_text = set_params(self.params_text, values)
        blobs = {
            str(PARAMS): params_text.encode(),
            "dvc.lock": lock_text(self.stages, yaml.safe_load(params_text), md5s, sizes).encode(),
            **{path: outputs[path] for path in git_outputs(self.stages)},
        }
        index = pygit2.Index()  # in memory: the repository's own index is not touched
        index.read_tree(self.baseline.tree)
        for path, data in blobs.items():
            index.add(pygit2.IndexEntry(path, self.git.create_blob(data), pygit2.GIT_FILEMODE_BLOB))
        tree = index.write_tree(self.git)
        ref = experiment_ref(str(self.baseline.id), name)
        existing = self.git.references.get(ref)
        if existing is not None and existing.peel(pygit2.Commit).tree_id == tree:
            return "unchanged"
        with repository_lock(self.dvc):  # as DVC's own commands take it to write refs
            signature = self._signature()
            commit = self.git.create_commit(None, signature, signature, f"dvc: sweep trial {name}",
                                            tree, [self.baseline.id])
            self.git.references.create(ref, commit, force=True)
        return "recorded" if existing is None else "replaced"

    def _signature(self) -> pygit2.Signature:
        try:
            return self.git.default_signature
        except KeyError:  # no user.name/user.email configured
            return pygit2.Signature(*FALLBACK_SIGNATURE)


def set_params(text: str, values: dict[str, Any]) -> str:
    """params.yaml's text with these dotted keys set, its order and comments kept, as
    `dvc exp run --set-param` edits it (DVC's round-trip YAML)."""
    params = _parse_for_update(text)
    for key, value in values.items():
        assign(params, key, value)
    return _dumps_yaml(params)


# --- DVC internals, each behind one function ---------------------------------------------------
# Checked against dvc 3.67.1 (dvc-data 3.18.3, dvc-objects 5.2.0); tests/test_sweep.py::
# test_dvc_internals_the_recording_uses_are_where_it_expects fails, naming it, if one moves.


def pipeline_stages(repo: Repo) -> list:
    """The stages of the repository's dvc.yaml files, in dvc.yaml order."""
    from dvc.stage import PipelineStage

    return [stage for stage in repo.index.stages if isinstance(stage, PipelineStage)]


def data_records(repo: Repo) -> dict[str, tuple[str, bool]]:
    """The repository's .dvc files (data that DVC tracks), by their data's path: each one's own
    path, and whether the data differs from it (as `dvc status` decides, under DVC's lock)."""
    from dvc.stage import PipelineStage

    records = [stage for stage in repo.index.stages if not isinstance(stage, PipelineStage) and len(stage.outs) == 1]
    with repository_lock(repo):
        return {str(Path(record.path_in_repo).parent / record.outs[0].def_path): (record.path_in_repo, record.changed())
                for record in records}


def repository_lock(repo: Repo):
    """DVC's repository lock (.dvc/tmp/lock), a context manager."""
    return repo.lock


def git_outputs(stages: list) -> list[str]:
    """The outputs that git keeps (`cache: false` in dvc.yaml: the metrics and plots here)."""
    return [out.def_path for stage in stages for out in stage.outs if not out.use_cache]


def cache_path(repo: Repo, md5: str) -> Path:
    """Where DVC's local cache keeps the object with this md5 (.dvc/cache/files/md5/ab/cdef...)."""
    return Path(repo.cache.local.oid_to_path(md5))


def cache_put(repo: Repo, data: bytes) -> str:
    """Put `data` in DVC's local cache as `dvc commit` does (written whole or not at all, then
    read-only); return its md5."""
    md5 = hashlib.md5(data).hexdigest()
    odb = repo.cache.local
    if not odb.exists(md5):
        odb.add_bytes(md5, data)
        odb.protect(odb.oid_to_path(md5))
    return md5


def lock_text(stages: list, params: dict, md5s: dict[str, str], sizes: dict[str, int]) -> str:
    """dvc.lock for these stages, as DVC writes it after running them with `params` (the whole
    params.yaml) and getting files with these md5s and sizes. Writes nothing: it only sets the
    hashes on DVC's stage objects and serializes them."""
    from dvc.dependency.param import ParamsDependency
    from dvc.stage.serialize import to_single_stage_lockfile
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta

    flat = flatten(params)
    entries = {}
    for stage in stages:
        for item in [*stage.deps, *stage.outs]:
            if isinstance(item, ParamsDependency):
                item.fill_values(flat)
            else:
                item.hash_info = HashInfo("md5", md5s[item.def_path])
                item.meta = Meta(size=sizes[item.def_path])
        entries[stage.name] = to_single_stage_lockfile(stage)
    return _dumps_yaml({"schema": "2.0", "stages": entries})


def experiment_ref(baseline: str, name: str) -> str:
    """The git ref of experiment `name` on the baseline commit: refs/exps/<sha[:2]>/<sha[2:]>/<name>."""
    from dvc.repo.experiments.refs import ExpRefInfo

    return str(ExpRefInfo(baseline, name))


def _parse_for_update(text: str) -> Any:
    from dvc.utils.serialize import parse_yaml_for_update

    return parse_yaml_for_update(text, str(PARAMS))


def _dumps_yaml(data: Any) -> str:
    from dvc.utils.serialize import dumps_yaml

    return dumps_yaml(data)
