"""DVC's internals that the kit uses, each behind one small function: nothing else in the kit
imports a private or undocumented name of DVC, or reads DVC's printed text to learn an outcome.

Checked against dvc 3.67.1 (dvc-data 3.18.3, dvc-objects 5.2.0). tests/test_dvc_internals.py
calls every function here and fails naming the one that moved when DVC changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ContextManager

from dvc.repo import Repo

from kit.dotted import flatten


def open_repo(root: Path) -> Repo:
    """DVC's repository object, in this process. Taking its lock waits while another DVC command
    holds it, as `dvc --wait-for-lock` does, rather than failing after 3 s."""
    return Repo(str(root), _wait_for_lock=True)


def repository_lock(repo: Repo) -> ContextManager[None]:
    """DVC's repository lock (.dvc/tmp/lock), as DVC's own commands hold it."""
    return repo.lock


# --- the pipeline's graph, as `dvc repro` sees it ----------------------------------------------


def address(stage) -> str:
    """The name `dvc repro` takes from the repository's root: `train`, `eval@fold1`,
    `sub/dvc.yaml:train`, `data/raw/iris.csv.dvc`. (DVC's own `addressing` is relative to the
    process's folder, which is not the repository's.)"""
    from dvc.stage import PipelineStage

    if not isinstance(stage, PipelineStage):
        return stage.path_in_repo
    return stage.name if stage.path_in_repo == "dvc.yaml" else f"{stage.path_in_repo}:{stage.name}"


def stage_graph(repo: Repo) -> tuple[dict[str, list[str]], dict[str, bool], frozenset[str]]:
    """Every stage of every dvc.yaml (foreach and matrix expanded) and every .dvc file, by
    address: the stages whose outputs each reads, whether each changed on its own (its deps, outs
    or command; DVC's `Stage.changed()`), and which are frozen. Call it under repository_lock."""
    graph = repo.index.graph  # edges point from a stage to the stages it reads from
    stages = {address(stage): stage for stage in graph}
    upstream = {a: sorted(address(u) for u in graph.successors(s)) for a, s in stages.items()}
    changed = {a: s.changed() for a, s in stages.items()}
    return upstream, changed, frozenset(a for a, s in stages.items() if s.frozen)


def repro_outcome(lines: list[str]) -> str:
    """What `dvc repro --single-item` did, from the lines it printed (it has no other answer; its
    exit code is 0 for all three): "cached" (outputs restored from DVC's run-cache, the command
    not run), "unchanged" (nothing to do), or "ran"."""
    if any("is cached - skipping run" in line for line in lines):
        return "cached"
    if any("didn't change, skipping" in line for line in lines):
        return "unchanged"
    return "ran"


# --- what an experiment records: dvc.lock, DVC's cache, its git ref ---------------------------


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
    return dumps_yaml({"schema": "2.0", "stages": entries})


def experiment_ref(baseline: str, name: str) -> str:
    """The git ref of experiment `name` on the baseline commit: refs/exps/<sha[:2]>/<sha[2:]>/<name>."""
    from dvc.repo.experiments.refs import ExpRefInfo

    return str(ExpRefInfo(baseline, name))


def parse_yaml_for_update(text: str, path: str) -> Any:
    """YAML parsed to be edited and written back with its order and comments, as DVC edits
    params.yaml (`dvc exp run --set-param`)."""
    from dvc.utils.serialize import parse_yaml_for_update as parse

    return parse(text, path)


def dumps_yaml(data: Any) -> str:
    """YAML as DVC writes it (dvc.lock, params.yaml)."""
    from dvc.utils.serialize import dumps_yaml as dumps

    return dumps(data)
