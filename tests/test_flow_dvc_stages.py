"""Option C end to end: DVC's own stages as Prefect tasks, independent ones at once, DVC deciding
and recording. A diamond-shaped repository shows the parallelism, the graph and the failures; the
kit's own pipeline shows parity with Option A and the retry."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime

import pytest
import yaml

from conftest import api, upstream, view_at
from diamond import UPSTREAM, make_diamond
from kit.dvc_graph import PlanFailed, plan_here, read_plan
from test_flow_dvc import user_venv

FLOW = "scripts/flow_dvc_stages.py"


def final_states(output: str) -> dict[str, str]:
    """Each stage task's final state name, from the run's log."""
    found = dict(re.findall(r"Task run '(.+?)-\w{3}' - Finished in state (\w+)\(", output))
    return {stage: state for stage, state in found.items() if stage in UPSTREAM or stage in KIT_STAGES}


KIT_STAGES = ("data/raw/iris.csv.dvc", "prepare", "train", "evaluate")


def lock_files(path) -> dict[str, object]:
    return {p: yaml.safe_load((path / p).read_text()) for p in ("dvc.lock", "sub/dvc.lock")}


def intervals(port, run_id) -> dict[str, tuple[datetime, datetime]]:
    _, tasks = api(port, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    return {t["name"].rsplit("-", 1)[0]: (datetime.fromisoformat(t["start_time"]), datetime.fromisoformat(t["end_time"]))
            for t in tasks if t["start_time"]}


def diamonds(tmp_path, *names: str):
    """Copies of one diamond repository, nothing run yet."""
    first, *rest = (tmp_path / name for name in names)
    make_diamond(first, sleep=2, site_cache=tmp_path / "dvc-site")
    for path in rest:
        shutil.copytree(first, path)
    return [first, *rest]


def test_the_diamond_runs_in_parallel_and_records_what_a_serial_repro_does(repo, tmp_path):
    serial, parallel = diamonds(tmp_path, "serial", "parallel")
    repo.py("-m", "dvc", "repro", "-q", "--all-pipelines", cwd=serial)

    out = repo.py(FLOW, "--repo", str(parallel), "--jobs", "2").stdout
    assert "for flow 'Prefect runs DVC stages'" in out
    assert final_states(out) == {s: "Skipped" if s == "data/seed.txt.dvc" else "Completed" for s in UPSTREAM}
    # DVC recorded every stage as a serial `dvc repro --all-pipelines` does, and finds all up to date.
    assert lock_files(parallel) == lock_files(serial)
    assert "Data and pipelines are up to date." in repo.py("-m", "dvc", "status", cwd=parallel).stdout
    port, run_id = view_at(out)
    # The UI draws DVC's graph: each stage task's upstream, as the API records it.
    graph = upstream(port, run_id)
    assert {s: graph[s] for s in UPSTREAM} == UPSTREAM
    # left and right ran at the same time: their task runs overlap.
    times = intervals(port, run_id)
    (l_start, l_end), (r_start, r_end) = times["left"], times["right"]
    assert l_start < r_end and r_start < l_end

    # Nothing changed: no DVC process, every stage Skipped, no output touched.
    mtimes = {p: p.stat().st_mtime_ns for p in parallel.rglob("*.txt")}
    again = repo.py(FLOW, "--repo", str(parallel)).stdout
    assert set(final_states(again).values()) == {"Skipped"} and len(final_states(again)) == len(UPSTREAM)
    assert "Running stage" not in again and "Stage 'left' didn't change, skipping" in again
    assert {p: p.stat().st_mtime_ns for p in parallel.rglob("*.txt")} == mtimes

    # A deleted output: DVC's run-cache restores it rather than rerunning the stage.
    left = (parallel / "left.txt").read_bytes()
    (parallel / "left.txt").unlink()
    restored = repo.py(FLOW, "--repo", str(parallel)).stdout
    assert "Stage 'left' is cached - skipping run, checking out outputs" in restored
    assert final_states(restored)["left"] == "Cached" and final_states(restored)["last"] == "Skipped"
    assert (parallel / "left.txt").read_bytes() == left


def test_a_failing_branch_stops_only_what_depends_on_it(repo, tmp_path):
    """As `dvc repro --keep-going`, but visible: right fails with DVC's last lines, left and the
    foreach are recorded, last and report are not run, and a rerun does only what is left."""
    (diamond,) = diamonds(tmp_path, "diamond")
    dvc_yaml = diamond / "dvc.yaml"
    good = dvc_yaml.read_text()
    dvc_yaml.write_text(good.replace("sleep 2 && cat first.txt > right.txt", "echo right is broken >&2; exit 3; cat first.txt > right.txt"))
    proc = repo.py(FLOW, "--repo", str(diamond), "--jobs", "2", check=False)
    out = proc.stdout
    assert proc.returncode == 255  # DVC's code for a failed stage, as `dvc repro` exits
    states = final_states(out)
    assert states["right"] == "Failed" and "right is broken" in out
    assert re.search(r"Task run 'right-\w+' - Finished in state Failed\(.Task run encountered an exception "
                     r"DvcFailed: dvc repro --single-item right exited with code 255", out)
    assert {s: states[s] for s in ("first", "left", "fold@1", "fold@2")} == dict.fromkeys(("first", "left", "fold@1", "fold@2"), "Completed")
    assert states["last"] == states["sub/dvc.yaml:report"] == "NotReady"
    assert "Running stage 'last'" not in out
    assert "stages failed: right; not run, downstream of a failure: last, sub/dvc.yaml:report" in out
    lock = yaml.safe_load((diamond / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"first", "left", "fold@1", "fold@2"}

    dvc_yaml.write_text(good)
    rerun = repo.py(FLOW, "--repo", str(diamond), "--jobs", "2").stdout
    ran = {s for s in UPSTREAM if f"Running stage '{s}'" in rerun}
    assert ran == {"right", "last", "sub/dvc.yaml:report"}


def test_the_kits_pipeline_same_bytes_as_option_a_with_the_retry_in_the_users_shell(repo, tmp_path):
    """On a fresh clone, from a shell whose own venv comes first on PATH: the kit's stages still
    run with the kit's interpreter, train's first attempt fails and its retry runs, and what DVC
    records is what the committed dvc.lock says `make run-dvc` gives: nothing tracked changes."""
    venv = user_venv(tmp_path)
    env = {**repo.env, "PATH": f"{venv / 'bin'}{os.pathsep}{repo.env['PATH']}"}
    out = repo.py(FLOW, "--fail-once", env=env).stdout
    assert re.search(r"Task run 'train-\w+' - Task run failed with exception:", out)
    assert "IntentionalFailure('Intentional one-time failure to demonstrate retries.')" in out
    assert "Retry 1/1 will start 2 second(s) from now" in out
    assert final_states(out) == {"data/raw/iris.csv.dvc": "Skipped", "prepare": "Completed", "train": "Completed",
                                 "evaluate": "Skipped"}
    assert repo.tracked_changes() == ""
    assert "Data and pipelines are up to date." in repo.py("-m", "dvc", "status").stdout
    metrics = json.loads(repo.read("reports/metrics.json"))
    assert f"Metrics: {json.dumps(metrics)}" in out


def test_the_plan_read_in_the_warm_dvc_is_dvcs_graph_and_a_broken_dvc_yaml_is_one_line(tmp_path):
    diamond = tmp_path / "diamond"
    make_diamond(diamond, sleep=0, site_cache=tmp_path / "dvc-site")
    plan = read_plan(diamond)  # forked from this process's warm DVC
    assert plan == plan_here(diamond) and {a: set(u) for a, u in plan.upstream.items()} == UPSTREAM
    (diamond / "dvc.yaml").write_text("stages:\n  x: [\n")
    with pytest.raises(PlanFailed) as failed:
        read_plan(diamond)
    assert str(failed.value) == ("DVC could not read the pipeline: unable to read: 'dvc.yaml', "
                                 "YAML file structure is corrupted")
