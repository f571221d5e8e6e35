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
        self.specs = dvc.stage_specs(self.dvc)  # the stages as a sweep runs them
        self.data = dvc.data_records(self.dvc)  # what DVC tracks: {path: (record, md5, size, changed)}
        self.cache = dvc.cache_folder(self.dvc)
        self.remote = dvc.default_remote(self.dvc)  # (name, url of its files) or None
        self.params_text = (self.root / PARAMS).read_text(encoding="utf-8")

    def uncommitted(self, paths: Iterable[str]) -> list[str]:
        """Those of `paths` (dvc.yaml, code, DVC-tracked data) that differ from HEAD. Experiments
        hold HEAD's files beside the trial's, so the trials must run on those very files."""
        changed = []
        for path in paths:
            if path in self.data:  # data that DVC tracks: its .dvc file, and the data against it
                record, _, _, data_changed = self.data[path]
                if self.git.status_file(record) or data_changed:
                    changed.append(path)
            elif self.git.status_file(path):
                changed.append(path)
        return changed

    def blob(self, file: Path) -> str:
        """Put a file in git's object store, streamed from disk; its id."""
        return str(self.git.create_blob_fromdisk(str(file)))

    def has_blob(self, blob: str) -> bool:
        return blob in self.git

    def record(self, name: str, values: dict[str, Any], md5s: dict[str, str], sizes: dict[str, int],
               blobs: dict[str, str]) -> str:
        """Record a trial as the experiment `name`: `values` are its params (dotted keys), `md5s`
        and `sizes` those of every file the stages read and write, by path from the root, and
        `blobs` the git objects of the outputs git keeps (`cache: false`). No file is read: dvc.lock
        is made from the md5s, and the tree from git's objects. Returns what happened: "recorded",
        "unchanged" (this very experiment was there) or "replaced"."""
        params_text = set_params(self.params_text, values)
        made = {
            str(PARAMS): self.git.create_blob(params_text.encode()),
            "dvc.lock": self.git.create_blob(
                dvc.lock_text(self.stages, yaml.safe_load(params_text), md5s, sizes).encode()),
        }
        index = pygit2.Index()  # in memory: the repository's own index is not touched
        index.read_tree(self.baseline.tree)
        for path, blob in {**made, **{path: pygit2.Oid(hex=b) for path, b in blobs.items()}}.items():
            index.add(pygit2.IndexEntry(path, blob, pygit2.GIT_FILEMODE_BLOB))
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
