"""Option A end to end: a real Prefect server, a real DVC repo, `python scripts/flow_dvc.py`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import PY, view_at

STAGES = ("prepare", "train", "evaluate")
OUTPUTS = (
    "data/processed/train.csv",
    "data/processed/test.csv",
    "models/model.joblib",
    "reports/metrics.json",
    "reports/predictions.csv",
)


def ran(output: str) -> set[str]:
    return {s for s in STAGES if f"Running stage '{s}'" in output}


def skipped(output: str) -> set[str]:
    return {s for s in STAGES if f"Stage '{s}' didn't change, skipping" in output}


def assert_streamed(output: str) -> None:
    """Each DVC line is logged when DVC prints it, not at the end: "Running stage 'train'" is
    logged a whole stage (a Python start and scikit-learn's import) after 'prepare'."""
    stamps = {}
    for line in output.splitlines():
        if m := re.search(r"^(\d\d):(\d\d):(\d\d\.\d+) .*Task run 'dvc repro-\w+' - Running stage '(\w+)'", line):
            h, mi, sec, stage = m.groups()
            stamps[stage] = int(h) * 3600 + int(mi) * 60 + float(sec)
    assert set(stamps) == {"prepare", "train"}
    assert stamps["train"] - stamps["prepare"] > 0.3


def test_first_run_then_no_change_then_params_change(repo):
    first = repo.py("scripts/flow_dvc.py").stdout
    assert "Beginning flow run" in first and "for flow 'Prefect operates DVC pipeline'" in first
    assert "Running: dvc repro" in first and f"CWD: {repo.path}" in first
    # A fresh clone has no cached outputs: prepare and train run. evaluate's outputs are committed
    # (DVC metrics and plots are tracked by git) and match dvc.lock, so DVC skips it.
    assert ran(first) == {"prepare", "train"} and skipped(first) == {"evaluate"}
    assert_streamed(first)
    assert re.search(r"Task run 'dvc repro-\w+' - Finished in state Completed\(\)", first)
    metrics = json.loads(repo.read("reports/metrics.json"))
    assert f"Metrics: {json.dumps(metrics)}" in first
    assert "Flow run" in first and first.rstrip().endswith("Finished in state Completed()")
    # The committed dvc.lock and reports are what this machine computes: nothing tracked changes.
    assert repo.tracked_changes() == ""
    before = {p: repo.read(p) for p in OUTPUTS}

    second = repo.py("scripts/flow_dvc.py").stdout
    assert skipped(second) == set(STAGES) and ran(second) == set()
    assert "Data and pipelines are up to date." in second
    assert view_at(second)[1] != view_at(first)[1]  # a new flow run all the same
    assert {p: repo.read(p) for p in OUTPUTS} == before

    repo.set_param("split.test_size", 0.25)
    third = repo.py("scripts/flow_dvc.py").stdout
    assert ran(third) == set(STAGES)
    assert repo.read("data/processed/test.csv") != before["data/processed/test.csv"]
    assert "split.test_size: 0.25" in repo.read("dvc.lock").decode()


def test_fail_once_shows_a_failed_attempt_then_the_retry(built_repo):
    for _ in range(2):  # every run shows it again: no marker file left behind
        out = built_repo.py("scripts/flow_dvc.py", "--fail-once", "--no-show-metrics").stdout
        assert "IntentionalFailure('Intentional one-time failure to demonstrate retries.')" in out
        assert "Retry 1/1 will start 2 second(s) from now" in out
        assert out.index("Retry 1/1") < out.index("Running: dvc repro")
        assert re.search(r"Task run 'dvc repro-\w+' - Finished in state Completed\(\)", out)
        # --no-show-metrics: no log line and no table (the task still runs, to publish them)
        assert "Metrics:" not in out and "f1_macro" not in out


def test_a_failing_stage_fails_the_run_with_dvcs_exit_code_and_is_not_retried(repo):
    (repo.path / "mltoy" / "pipeline.py").write_text(
        repo.read("mltoy/pipeline.py").decode().replace(
            "    train, test = split(read_raw(raw_csv, params.split), params.split)\n",
            "    raise ZeroDivisionError('boom in prepare')\n", 1,
        )
    )
    proc = repo.py("scripts/flow_dvc.py", check=False)
    assert proc.returncode == 255  # DVC's own exit code for a failed stage
    assert "ZeroDivisionError: boom in prepare" in proc.stdout
    assert "dvc repro exited with code 255; its last lines:" in proc.stdout
    assert "Retry 1/1" not in proc.stdout
    assert "Finished in state Failed" in proc.stdout


def user_venv(tmp_path) -> Path:
    """The user's own virtual environment, with a package that only it has."""
    venv = tmp_path / "user-venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "only_in_user_venv.py").write_text("def greet():\n    return 'hello from the user venv'\n")
    return venv


def foreign_repo(repo, path: Path) -> Path:
    """A DVC project nobody here wrote: its one stage imports a module only the user's venv has."""
    path.mkdir()
    repo.run("git", "init", "-q", cwd=path)
    repo.py("-m", "dvc", "init", "-q", cwd=path)
    repo.py("-m", "dvc", "config", "--local", "core.site_cache_dir", str(path.parent / "dvc-site"), cwd=path)
    (path / "dvc.yaml").write_text(
        "stages:\n  greet:\n    cmd: python -c \"import only_in_user_venv as m; open('out.txt', 'w').write(m.greet())\"\n"
        "    outs: [out.txt]\n"
    )
    return path


def test_a_foreign_repo_runs_from_any_folder_in_the_users_environment_and_the_kit_in_its_own(repo, tmp_path):
    """As `dvc repro` typed in the user's shell would: a foreign repo's `python` is the user's
    (first on their PATH), while the kit's own stages still run with the kit's interpreter.
    --repo is relative to the folder the command is typed in."""
    venv = user_venv(tmp_path)
    env = {**repo.env, "PATH": f"{venv / 'bin'}{os.pathsep}{repo.env['PATH']}", "VIRTUAL_ENV": str(venv)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for flow in ("flow_dvc.py", "flow_dvc_stages.py"):  # Options A and C
        other = foreign_repo(repo, tmp_path / f"other-{flow.removesuffix('.py')}")
        out = repo.py(str(repo.path / "scripts" / flow), "--repo", f"../{other.name}", "--no-show-metrics",
                      cwd=elsewhere, env=env).stdout
        assert "Running stage 'greet'" in out and out.rstrip().endswith("Finished in state Completed()")
        assert (other / "out.txt").read_text() == "hello from the user venv"
        assert "No metrics file declared in dvc.yaml" in out
        if flow == "flow_dvc.py":
            assert f"CWD: {other}" in out

    # The kit's pipeline, from the same shell: its stages need pandas and scikit-learn, which the
    # user's venv lacks; they run with the kit's interpreter all the same.
    kit = repo.py("scripts/flow_dvc.py", "--no-show-metrics", env=env).stdout
    assert ran(kit) == {"prepare", "train"} and kit.rstrip().endswith("Finished in state Completed()")
