"""Option B end to end: Prefect runs the stages in-process, caches them by DVC's rule, and gives
the same answers as Option A."""

from __future__ import annotations

import json
import re

import joblib
import pandas as pd

from conftest import upstream, view_at

STAGES = ("prepare", "train", "evaluate")
OUTPUTS = {
    "prepare": ("data/processed/train.csv", "data/processed/test.csv"),
    "train": ("models/model.joblib",),
    "evaluate": ("reports/metrics.json", "reports/predictions.csv"),
}
ALL_OUTPUTS = [p for outs in OUTPUTS.values() for p in outs]


def states(output: str) -> dict[str, str]:
    """Each stage task's final state in a run's log: 'Completed' or 'Cached'."""
    found = dict(re.findall(r"Task run '(prepare|train|evaluate)-\w+' - Finished in state (\w+)\(", output))
    assert set(found) == set(STAGES), output
    return found


def ran(output: str) -> set[str]:
    """The stages that ran, by their own log line and by their final state."""
    by_log = {s for s in STAGES if re.search(rf"Task run '{s}-\w+' - Running stage '{s}'", output)}
    by_state = {s for s, state in states(output).items() if state == "Completed"}
    assert by_log == by_state, output
    return by_state


def snapshot(repo) -> dict[str, tuple[bytes, int]]:
    return {p: (repo.read(p), (repo.path / p).stat().st_mtime_ns) for p in ALL_OUTPUTS}


def rewritten(before, after) -> set[str]:
    """The stages whose outputs were written again (mtime changed)."""
    return {s for s, outs in OUTPUTS.items() if any(before[p][1] != after[p][1] for p in outs)}


def run_stages(repo, *args: str) -> str:
    return repo.py("scripts/flow_stages.py", "--no-show-metrics", *args).stdout


def test_caching_follows_dvcs_rule(repo):
    first = run_stages(repo)
    assert "for flow 'Prefect owned stage DAG'" in first and "View at http://127.0.0.1:" in first
    assert ran(first) == set(STAGES)
    # The UI draws the DAG of dvc.yaml: each task waits on the stages whose outputs it reads.
    assert upstream(*view_at(first)) == {
        "prepare": set(), "train": {"prepare"}, "evaluate": {"prepare", "train"},
        "metrics summary": {"evaluate"}, "pipeline plots": {"evaluate"},
    }
    assert repo.tracked_changes() == ""  # same bytes as dvc.lock and the committed reports
    s1 = snapshot(repo)

    # The very next run: nothing changed, nothing runs, every output untouched.
    second = run_stages(repo)
    assert states(second) == {s: "Cached" for s in STAGES}
    assert snapshot(repo) == s1

    repo.set_param("train.C", 0.5)
    third = run_stages(repo)
    s3 = snapshot(repo)
    assert ran(third) == {"train", "evaluate"} and rewritten(s1, s3) == {"train", "evaluate"}

    repo.set_param("split.test_size", 0.25)
    fourth = run_stages(repo)
    s4 = snapshot(repo)
    assert ran(fourth) == set(STAGES) and rewritten(s3, s4) == set(STAGES)

    # A deleted output: the stage that makes it runs again; the same bytes come back, so
    # evaluate (which reads the model) stays cached.
    (repo.path / "models" / "model.joblib").unlink()
    fifth = run_stages(repo)
    assert ran(fifth) == {"train"}
    assert repo.read("models/model.joblib") == s4["models/model.joblib"][0]

    # An edited output: same, and never a stale output left behind by a cache hit.
    with open(repo.path / "reports" / "metrics.json", "a") as f:
        f.write(" ")
    sixth = run_stages(repo)
    assert ran(sixth) == {"evaluate"}
    assert repo.read("reports/metrics.json") == s4["reports/metrics.json"][0]

    # And the run after a rerun is cached again at once.
    assert states(run_stages(repo)) == {s: "Cached" for s in STAGES}


def test_same_answers_as_option_a(make_repo):
    a, b = make_repo("a"), make_repo("b")
    a.py("scripts/flow_dvc.py", "--no-show-metrics")
    b.py("scripts/flow_stages.py", "--no-show-metrics")
    for path in ("data/processed/train.csv", "data/processed/test.csv", "reports/metrics.json", "reports/predictions.csv"):
        assert a.read(path) == b.read(path), path
    test = pd.read_csv(a.path / "data" / "processed" / "test.csv")
    features = test.drop(columns="species")
    pa = joblib.load(a.path / "models" / "model.joblib").predict(features)
    pb = joblib.load(b.path / "models" / "model.joblib").predict(features)
    assert list(pa) == list(pb)


def test_fail_once_retries_train_even_when_cached(built_repo):
    out = built_repo.py("scripts/flow_stages.py", "--fail-once").stdout
    assert re.search(r"Task run 'train-\w+' - Task run failed with exception:", out)
    assert "IntentionalFailure('Intentional one-time failure to demonstrate retries.')" in out
    assert "Retry 1/1 will start 2 second(s) from now" in out
    assert states(out)["train"] == "Completed"
    metrics = json.loads(built_repo.read("reports/metrics.json"))
    assert f"Metrics: {json.dumps(metrics)}" in out and "accuracy" in out  # log line and table


def test_params_flag_and_bad_params(built_repo, tmp_path):
    other = tmp_path / "other-params.yaml"
    default_model = built_repo.read("models/model.joblib")
    other.write_text(built_repo.read("params.yaml").decode().replace("C: 0.1", "C: 2.0"))
    out = run_stages(built_repo, "--params", str(other))
    assert joblib.load(built_repo.path / "models" / "model.joblib")[-1].C == 2.0
    assert built_repo.read("models/model.joblib") != default_model
    assert "Metrics:" not in out
    other.write_text(built_repo.read("params.yaml").decode().replace("C: 0.1", "C: -1"))
    before = snapshot(built_repo)
    bad = built_repo.py("scripts/flow_stages.py", "--params", str(other), check=False)
    assert bad.returncode == 1
    assert f"error: {other}: train.C: input should be greater than 0 (got -1)" in bad.stdout
    assert snapshot(built_repo) == before
