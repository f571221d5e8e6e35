"""DVC's internals that the kit uses, each behind one small function: nothing else in the kit
imports a private or undocumented name of DVC, or reads DVC's printed text to learn an outcome.

Checked against dvc 3.67.1 (dvc-data 3.18.3, dvc-objects 5.2.0). tests/test_dvc_internals.py
calls every function here and fails naming the one that moved when DVC changes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

from kit.dotted import flatten

if TYPE_CHECKING:  # DVC is imported where it is used: a flow that only reads DVC's text needs none
    from dvc.repo import Repo


def open_repo(root: Path) -> Repo:
    """DVC's repository object, in this process. Taking its lock waits while another DVC command
    holds it, as `dvc --wait-for-lock` does, rather than failing after 3 s."""
    from dvc.repo import Repo

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


def warm_up(root: Path) -> None:
    """Import, in this process, what a `dvc repro` imports as it goes (git, the config, the
    stage loaders, the graph): open the repository and build its graph, without its lock, and
    close it. A process forked after it starts DVC's commands warm (kit/warm_dvc.py). It starts
    no thread, so forking after it is safe."""
    with open_repo(root) as repo:
        repo.index.graph


LOCK_POLL_S = 0.05


def poll_lock_often() -> None:
    """Make DVC, in this process, retry its repository lock every LOCK_POLL_S instead of every
    0.5 s (dvc/lock.py: DEFAULT_TIMEOUT, 3 s over 6 tries). Option C's stages meet at that lock
    at their start and their end; each meeting cost up to 0.5 s. Only for commands that wait for
    the lock (--wait-for-lock): one that gives up would do so after 0.3 s instead of 3 s."""
    import dvc.lock

    dvc.lock.DEFAULT_TIMEOUT = LOCK_POLL_S * 6


def command_line(args: list[str]) -> int:
    """`dvc ARGS` in this process, as the `dvc` console entry runs it; its exit status."""
    from dvc.cli import main

    return main(args)


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


def data_records(repo: Repo) -> dict[str, tuple[str, str, int, bool]]:
    """The repository's .dvc files (data that DVC tracks), by their data's path from the root:
    each one's own path, the md5 and size it records, and whether the data differs from it (as
    `dvc status` decides, under DVC's lock). Files only: a tracked directory is left out."""
    from dvc.stage import PipelineStage

    records = [stage for stage in repo.index.stages if not isinstance(stage, PipelineStage) and len(stage.outs) == 1
               and not stage.outs[0].hash_info.isdir]
    with repository_lock(repo):
        return {_from_root(repo, record.outs[0].fs_path):
                (record.path_in_repo, record.outs[0].hash_info.value, record.outs[0].meta.size, record.changed())
                for record in records}


def stage_specs(repo: Repo) -> list[dict]:
    """Each stage of the repository's dvc.yaml files, in order, as a sweep runs it: its address,
    its command lines, its working folder, the files it reads and writes (paths from the root;
    whether DVC caches each output), and the keys of params.yaml it reads (dotted). Raises
    ValueError for what a sweep cannot run: a directory as a dep or output, another params file."""
    from dvc.dependency.param import ParamsDependency

    specs = []
    for stage in pipeline_stages(repo):
        name, deps, params = address(stage), [], []
        for dep in stage.deps:
            if isinstance(dep, ParamsDependency):
                if _from_root(repo, dep.fs_path) != "params.yaml":
                    raise ValueError(f"stage {name!r} reads params from {dep.def_path}; a sweep sets params.yaml's only")
                params += dep.params or []
            elif dep.hash_info and dep.hash_info.isdir or Path(dep.fs_path).is_dir():
                raise ValueError(f"stage {name!r} reads the folder {dep.def_path}; a sweep moves files only")
            else:
                deps.append(_from_root(repo, dep.fs_path))
        for out in stage.outs:
            if out.hash_info and out.hash_info.isdir:
                raise ValueError(f"stage {name!r} writes the folder {out.def_path}; a sweep moves files only")
        cmd = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
        specs.append({"name": name, "cmd": cmd, "wdir": _from_root(repo, stage.wdir), "deps": deps,
                      "params": params, "outs": {_from_root(repo, out.fs_path): out.use_cache for out in stage.outs}})
    return specs


def _from_root(repo: Repo, path: str) -> str:
    return Path(path).relative_to(repo.root_dir).as_posix() or "."


def cache_folder(repo: Repo) -> Path:
    """The folder of DVC's local cache that holds files by md5 (.dvc/cache/files/md5)."""
    return Path(repo.cache.local.path)


def default_remote(repo: Repo) -> tuple[str, str] | None:
    """The repository's default DVC remote (`dvc remote default`): its name, and the URL of the
    folder in it that holds files by md5 (`<url>/files/md5`, DVC 3's layout); None without one."""
    name = repo.config["core"].get("remote")
    if not name:
        return None
    return name, f"{repo.config['remote'][name]['url'].rstrip('/')}/files/md5"


@functools.cache
def remote_filesystem(url: str):
    """DVC's filesystem for a remote's URL, and the path in it, for a process with no repository
    (a Dask worker): credentials come from that machine's environment, as for `dvc pull` there."""
    from dvc.fs import get_cloud_fs

    cls, config, path = get_cloud_fs({}, url=url)
    return cls(**config), path


def lock_text(stages: list, params: dict, md5s: dict[str, str], sizes: dict[str, int]) -> str:
    """dvc.lock for these stages, as DVC writes it after running them with `params` (the whole
    params.yaml) and getting files with these md5s and sizes (by path from the root). Writes
    nothing: it only sets the hashes on DVC's stage objects and serializes them."""
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
                path = _from_root(stage.repo, item.fs_path)
                item.hash_info = HashInfo("md5", md5s[path])
                item.meta = Meta(size=sizes[path])
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
