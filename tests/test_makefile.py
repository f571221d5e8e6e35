"""The Makefile is the kit's interface: `make help` must list every target and every knob, with
a line each, from the Makefile's own comments."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT


def test_help_is_the_default_goal_and_lists_every_target_and_knob():
    makefile = (ROOT / "Makefile").read_text()
    declared = re.findall(r"^\.PHONY: ([\w-]+)", makefile, flags=re.M)
    rules = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    assert set(declared) == rules  # every rule is a documented phony target
    knobs = dict(re.findall(r"^([A-Z_]+) \?= ?(.*)$", makefile, flags=re.M))
    out = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    targets, _, knob_lines = out.partition("Knobs")
    listed = dict(re.findall(r"^  ([\w-]+) +(\S.*)$", targets, flags=re.M))
    assert list(listed) == declared
    for target in ("setup", "data", "prefect-start", "prefect-stop", "prefect-status", "doctor", "metrics",
                   "run-dvc", "run-stages", "run-dvc-stages", "sweep", "dask-start", "dask-stop", "dask-worker",
                   "bench", "bench-sweep", "test", "clean", "serve", "deploy", "worker"):
        assert listed[target], target
    assert "keeps .venv" in listed["clean"]
    # Every knob, with its default and the line that documents it.
    listed_knobs = {name: (value, doc) for name, value, doc in
                    re.findall(r"^  ([A-Z_]+)=(\S*) +(\S.*)$", knob_lines, flags=re.M)}
    assert {name: value for name, (value, _) in listed_knobs.items()} == knobs
    for knob in ("BENCH_RUNS", "TEST_WORKERS", "PYTHON", "FAIL_ONCE", "PREFECT_PORT", "DASK_ADDRESS"):
        assert listed_knobs[knob][1], knob


def test_clean_removes_outputs_and_caches_and_keeps_the_rest(built_repo):
    home = built_repo.path / ".prefect"
    (home / "storage").mkdir(parents=True)
    (home / "storage" / "train-0123").write_text("{}")  # an Option B cache record
    (home / "prefect.db").write_text("run history")
    (built_repo.path / ".dvc" / "cache" / "runs").mkdir()  # DVC's run-cache (unused with persist)
    (built_repo.path / ".dvc" / "tmp" / "kit-stage-runs").mkdir(parents=True)  # the sweeps' stage runs
    built_repo.run("make", "-s", "clean")
    for gone in ("data/processed/train.csv", "models/model.joblib", ".dvc/cache/runs", ".dvc/tmp/kit-stage-runs",
                 ".prefect/storage"):
        assert not (built_repo.path / gone).exists(), gone
    assert (built_repo.path / "data" / "raw" / "iris.csv").is_file()
    assert (home / "prefect.db").read_text() == "run history"
    assert built_repo.tracked_changes() == ""  # the tracked reports and DVC's .gitignore files stay
