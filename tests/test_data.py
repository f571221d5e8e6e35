"""`make data` (scripts/get_data.py), offline: rebuilt from scikit-learn's copy of iris and
checked against its DVC record; a file already there is never overwritten."""

from __future__ import annotations

import hashlib


def test_rebuilt_data_matches_its_record_and_is_in_dvcs_cache(repo):
    """The template ran get_data once; a fresh copy's data is recorded, so DVC sees no change."""
    record = repo.read("data/raw/iris.csv.dvc").decode()
    assert hashlib.md5(repo.read("data/raw/iris.csv")).hexdigest() in record
    status = repo.py("-m", "dvc", "status", "data/raw/iris.csv.dvc").stdout
    assert "up to date" in status


def test_a_present_file_is_left_alone_even_when_it_differs(repo):
    raw = repo.path / "data" / "raw" / "iris.csv"
    changed = raw.read_bytes() + b"5.0,3.0,1.5,0.2,setosa\n"
    raw.write_bytes(changed)
    out = repo.py("scripts/get_data.py").stdout
    assert "present, left as it is" in out
    assert raw.read_bytes() == changed


def test_a_record_of_other_data_is_a_clear_error_and_writes_nothing(repo):
    record = repo.path / "data" / "raw" / "iris.csv.dvc"
    record.write_text(record.read_text().replace("md5: ", "md5: 0000", 1))
    (repo.path / "data" / "raw" / "iris.csv").unlink()
    cache = repo.path / ".dvc" / "cache"
    for obj in cache.rglob("*"):  # no cached copy to fall back on
        if obj.is_file():
            obj.unlink()
    proc = repo.py("scripts/get_data.py", check=False)
    assert proc.returncode == 1
    assert "error: iris rebuilt from scikit-learn has md5" in proc.stdout and "nothing written" in proc.stdout
    assert not (repo.path / "data" / "raw" / "iris.csv").exists()
    assert list((repo.path / "data" / "raw").glob(".*.tmp")) == []


def test_option_b_refuses_dvc_yaml_paths_outside_the_repository(built_repo):
    dvc_yaml = built_repo.path / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("--model models/model.joblib", "--model ../outside.joblib", 1))
    proc = built_repo.py("scripts/flow_stages.py", check=False)
    assert proc.returncode == 1
    assert "dvc.yaml: stage 'train': ../outside.joblib is outside the repository" in proc.stdout
    assert not (built_repo.path.parent / "outside.joblib").exists()
