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

from kit import dvc_internals as dvc
from kit.dotted import assign
from kit.project import PARAMS
from mltoy import InputError

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
        self.dvc = dvc.open_repo(self.root)
        self.stages = dvc.pipeline_stages(self.dvc)
        self.params_text = (self.root / PARAMS).read_text(encoding="utf-8")

    def uncommitted(self, paths: Iterable[str]) -> list[str]:
        """Those of `paths` (dvc.yaml, code, DVC-tracked data) that differ from HEAD. Experiments
        hold HEAD's files beside the trial's, so the trials must run on those very files."""
        records = dvc.data_records(self.dvc)
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
        return all(dvc.cache_path(self.dvc, md5).is_file() for md5 in md5s)

    def read_cached(self, md5: str) -> bytes:
        return dvc.cache_path(self.dvc, md5).read_bytes()

    def record(self, name: str, values: dict[str, Any], outputs: dict[str, bytes],
               inputs: dict[str, bytes]) -> str:
        """Record a trial as the experiment `name`: `values` are its params (dotted keys),
        `outputs` the bytes of every stage's outputs and `inputs` of the files they read that no
        stage writes, by path. Every output goes to DVC's cache (also those git keeps, so that a
        later sweep can record the trial again from there). Returns what happened: "recorded",
        "unchanged" (this very experiment was there) or "replaced"."""
        md5s = {path: dvc.cache_put(self.dvc, data) for path, data in outputs.items()}
        md5s |= {path: hashlib.md5(data).hexdigest() for path, data in inputs.items()}
        sizes = {path: len(data) for path, data in (outputs | inputs).items()}
        params_text = set_params(self.params_text, values)
        blobs = {
            str(PARAMS): params_text.encode(),
            "dvc.lock": dvc.lock_text(self.stages, yaml.safe_load(params_text), md5s, sizes).encode(),
            **{path: outputs[path] for path in dvc.git_outputs(self.stages)},
        }
        index = pygit2.Index()  # in memory: the repository's own index is not touched
        index.read_tree(self.baseline.tree)
        for path, data in blobs.items():
            index.add(pygit2.IndexEntry(path, self.git.create_blob(data), pygit2.GIT_FILEMODE_BLOB))
        tree = index.write_tree(self.git)
        ref = dvc.experiment_ref(str(self.baseline.id), name)
        existing = self.git.references.get(ref)
        if existing is not None and existing.peel(pygit2.Commit).tree_id == tree:
            return "unchanged"
        with dvc.repository_lock(self.dvc):  # as DVC's own commands take it to write refs
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
    params = dvc.parse_yaml_for_update(text, str(PARAMS))
    for key, value in values.items():
        assign(params, key, value)
    return dvc.dumps_yaml(params)
