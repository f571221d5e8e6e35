"""DVC's internals, each behind one function of scripts/kit/dvc_internals.py (checked with dvc
3.67.1): one test per function, named after it, so when DVC moves one, the test that fails says
which. Nothing else in the kit imports DVC."""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from diamond import UPSTREAM, make_diamond
from kit import dvc_internals as dvc

KIT_FILES = ("mltoy/pipeline.py", "mltoy/data.py", "data/raw/iris.csv", "data/processed/train.csv", "data/processed/test.csv",
             "models/model.joblib", "reports/metrics.json", "reports/predictions.csv")


@pytest.fixture(scope="module")
def diamond(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("internals") / "diamond"
    make_diamond(path, sleep=0, site_cache=path.parent / "dvc-site")
    return path


def check_open_repo(built_repo, diamond, tmp_path):
    with dvc.open_repo(diamond) as repo:
        assert Path(repo.root_dir) == diamond


def check_repository_lock(built_repo, diamond, tmp_path):
    with dvc.open_repo(diamond) as repo, dvc.repository_lock(repo):
        assert (diamond / ".dvc" / "tmp" / "lock").exists()


def check_address(built_repo, diamond, tmp_path):
    with dvc.open_repo(diamond) as repo:
        assert {dvc.address(stage) for stage in repo.index.graph} == set(UPSTREAM)


def check_stage_graph(built_repo, diamond, tmp_path):
    with dvc.open_repo(diamond) as repo, dvc.repository_lock(repo):
        upstream, changed, frozen = dvc.stage_graph(repo)
    assert {a: set(u) for a, u in upstream.items()} == UPSTREAM
    assert changed == {a: a != "data/seed.txt.dvc" for a in UPSTREAM}  # nothing has run yet
    assert frozen == frozenset()


def check_warm_up(built_repo, diamond, tmp_path):
    threads = threading.active_count()
    dvc.warm_up(diamond)
    assert threading.active_count() == threads  # forking after it is safe


def check_poll_lock_often(built_repo, diamond, tmp_path):
    import zc.lockfile
    from dvc import lock as dvc_lock

    held = zc.lockfile.LockFile(str(tmp_path / "lock"))  # as another DVC command would hold it
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # DVC's wait between two tries: let go, and note its length
        waits.append(seconds)
        held.close()

    timeout, real_sleep = dvc_lock.DEFAULT_TIMEOUT, dvc_lock.time.sleep
    dvc_lock.time.sleep = sleep
    try:
        dvc.poll_lock_often()
        lock = dvc_lock.Lock(str(tmp_path / "lock"), wait=True)
        lock.lock()
        lock.unlock()
    finally:
        dvc_lock.DEFAULT_TIMEOUT, dvc_lock.time.sleep = timeout, real_sleep
    assert waits == [pytest.approx(dvc.LOCK_POLL_S)]


def check_command_line(built_repo, diamond, tmp_path):
    assert dvc.command_line(["version"]) == 0


def check_repro_outcome(built_repo, diamond, tmp_path):
    diamond = shutil.copytree(diamond, tmp_path / "diamond", symlinks=True)

    def repro(*args: str) -> list[str]:
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", *args], cwd=diamond,
                              capture_output=True, text=True, check=True)
        return (proc.stdout + proc.stderr).splitlines()

    seed = diamond / "data" / "seed.txt"
    assert dvc.repro_outcome(repro("data/seed.txt.dvc")) == "unchanged"
    assert dvc.repro_outcome(repro("first")) == "ran"
    assert dvc.repro_outcome(repro("first")) == "unchanged"
    original = seed.read_text()
    seed.write_text("another seed\n")
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data/seed.txt"], cwd=diamond, check=True)
    assert dvc.repro_outcome(repro("first")) == "ran"
    seed.write_text(original)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data/seed.txt"], cwd=diamond, check=True)
    assert dvc.repro_outcome(repro("first")) == "cached"  # the first run's outputs, from the run-cache


def check_pipeline_stages(built_repo, diamond, tmp_path):
    with dvc.open_repo(built_repo.path) as repo:
        assert [stage.name for stage in dvc.pipeline_stages(repo)] == ["prepare", "train", "evaluate"]


def check_data_records(built_repo, diamond, tmp_path):
    data = built_repo.read("data/raw/iris.csv")
    with dvc.open_repo(built_repo.path) as repo:
        assert dvc.data_records(repo) == {
            "data/raw/iris.csv": ("data/raw/iris.csv.dvc", hashlib.md5(data).hexdigest(), len(data), False)}


def check_stage_specs(built_repo, diamond, tmp_path):
    with dvc.open_repo(built_repo.path) as repo:
        specs = {spec["name"]: spec for spec in dvc.stage_specs(repo)}
    assert specs["train"] == {
        "name": "train", "wdir": ".",
        "cmd": ["python -m mltoy.cli train --train data/processed/train.csv --model models/model.joblib"],
        "deps": ["mltoy/pipeline.py", "mltoy/data.py", "data/processed/train.csv"],
        "params": ["preprocess.standardize", "train.C", "train.max_iter"], "outs": {"models/model.joblib": True}}
    assert specs["evaluate"]["outs"] == {"reports/metrics.json": False, "reports/predictions.csv": False}
    with dvc.open_repo(diamond) as repo:
        assert dvc.stage_specs(repo)[-1]["name"] == "sub/dvc.yaml:report"
        assert dvc.stage_specs(repo)[-1]["deps"] == ["last.txt"] and dvc.stage_specs(repo)[-1]["wdir"] == "sub"


def check_cache_folder(built_repo, diamond, tmp_path):
    data = built_repo.read("data/raw/iris.csv")
    md5 = hashlib.md5(data).hexdigest()
    with dvc.open_repo(built_repo.path) as repo:
        assert (dvc.cache_folder(repo) / md5[:2] / md5[2:]).read_bytes() == data


def check_default_remote(built_repo, diamond, tmp_path):
    with dvc.open_repo(built_repo.path) as repo:
        assert dvc.default_remote(repo) is None
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "--local", "store", "../remote"],
                   cwd=built_repo.path, check=True, capture_output=True)
    with dvc.open_repo(built_repo.path) as repo:  # the path as typed, from the folder it was typed in
        assert dvc.default_remote(repo) == ("store", f"{built_repo.path.parent / 'remote'}/files/md5")


def check_remote_filesystem(built_repo, diamond, tmp_path):
    fs, path = dvc.remote_filesystem(str(tmp_path))
    (tmp_path / "x").write_text("x")
    assert path == str(tmp_path) and fs.exists(f"{path}/x")
    fs.get_file(f"{path}/x", str(tmp_path / "y"))
    assert (tmp_path / "y").read_text() == "x"


def check_lock_text(built_repo, diamond, tmp_path):
    files = {path: built_repo.read(path) for path in KIT_FILES}
    md5s = {path: hashlib.md5(data).hexdigest() for path, data in files.items()}
    sizes = {path: len(data) for path, data in files.items()}
    with dvc.open_repo(built_repo.path) as repo:
        text = dvc.lock_text(dvc.pipeline_stages(repo), yaml.safe_load(built_repo.read("params.yaml")), md5s, sizes)
    assert text == built_repo.read("dvc.lock").decode()  # byte for byte what `dvc repro` wrote


def check_experiment_ref(built_repo, diamond, tmp_path):
    assert dvc.experiment_ref("ab" + "c" * 38, "x") == f"refs/exps/ab/{'c' * 38}/x"


def check_parse_yaml_for_update(built_repo, diamond, tmp_path):
    params = built_repo.read("params.yaml").decode()
    parsed = dvc.parse_yaml_for_update(params, "params.yaml")
    parsed["train"]["C"] = 2.0
    assert dvc.dumps_yaml(parsed) == params.replace("C: 0.1", "C: 2.0")  # order and comments kept


def check_dumps_yaml(built_repo, diamond, tmp_path):
    assert dvc.dumps_yaml({"b": 1, "a": [1, 2]}) == "b: 1\na:\n- 1\n- 2\n"


CHECKS = {name.removeprefix("check_"): f for name, f in dict(globals()).items() if name.startswith("check_")}


def test_every_internal_has_its_check():
    public = {name for name, f in inspect.getmembers(dvc, callable)
              if getattr(f, "__module__", None) == dvc.__name__ and not name.startswith("_") and not inspect.isclass(f)}
    assert public == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_dvc_internal(name, built_repo, diamond, tmp_path):
    CHECKS[name](built_repo, diamond, tmp_path)


def test_nothing_else_in_the_kit_imports_dvc():
    importers = []
    for path in sorted((ROOT / "scripts").rglob("*.py")):
        if path.name != "dvc_internals.py" and re.search(r"^\s*(from|import) (dvc|dvc_data|dvc_objects)\b",
                                                         path.read_text(), flags=re.M):
            importers.append(str(path.relative_to(ROOT)))
    assert importers == []
