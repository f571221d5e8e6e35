"""The metrics as people see them: `make metrics` against the last published run and git HEAD,
and the table artifact every flow run publishes under one key, with the change against the
previous published run."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone

from conftest import MAKE, PY, ROOT, api, free_port, kit_env, view_at
from kit import metrics

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_artifact_table_shows_value_previous_and_change():
    values = {"f1_macro": 0.9, "accuracy": 0.85}
    assert metrics.artifact_table(values, None) == [
        {"metric": "accuracy", "value": 0.85, "previous": None, "change": ""},
        {"metric": "f1_macro", "value": 0.9, "previous": None, "change": ""},
    ]
    assert metrics.artifact_table(values, {"accuracy": 0.9, "gone": 1.0}) == [
        {"metric": "accuracy", "value": 0.85, "previous": 0.9, "change": "-0.0500"},
        {"metric": "f1_macro", "value": 0.9, "previous": None, "change": "new"},
    ]


def test_a_published_table_reads_back_and_anything_else_under_the_key_does_not():
    values = {"accuracy": 0.8444444444444444, "f1_macro": 0.8442714126807563}
    published = json.dumps(metrics.artifact_table(values, {"accuracy": 0.5}))  # what Prefect stores
    assert metrics.artifact_values(published) == {"accuracy": 0.8444, "f1_macro": 0.8443}  # as the tables show
    for foreign in (None, "# a markdown report", "not json {", '{"accuracy": [0.9]}', '[["accuracy", 0.9]]',
                    '[{"metric": "accuracy", "value": "high"}]', '[{"metric": "ok", "value": true}]'):
        assert metrics.artifact_values(foreign) is None, foreign


def test_artifact_description_says_what_the_change_is_against():
    assert metrics.artifact_description("/kit/reports/metrics.json", None) == (
        "**Pipeline metrics** from `/kit/reports/metrics.json`. No earlier published metrics to compare with."
    )
    assert metrics.artifact_description("/kit/reports/metrics.json", NOW).endswith(
        "*change* is against the previous published run (2026-01-02 03:04:05 UTC)."
    )


def test_make_metrics_prints_the_change_against_head_and_says_when_no_server_answers(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    path = tmp_path / "metrics.json"
    path.write_text('{"accuracy": 0.8, "f1_macro": 0.7}')
    git("init", "-q")
    git("add", "metrics.json")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "m")
    path.write_text('{"accuracy": 0.85, "f1_macro": 0.7, "recall": 0.6}')
    port = free_port()  # nothing listens there: no published run to compare with
    out = subprocess.run([PY, str(ROOT / "scripts" / "metrics.py"), str(path)], capture_output=True, text=True,
                         check=True, env=kit_env(tmp_path / "prefect-home", port)).stdout
    assert out.splitlines() == [
        "metric        value      vs HEAD",
        "--------------------------------",
        "accuracy     0.8500      +0.0500",
        "f1_macro     0.7000      +0.0000",
        "recall       0.6000          new",
        f"(last run: no Prefect server answers at http://127.0.0.1:{port})",
    ]


def test_every_run_publishes_the_metrics_artifact_with_the_change_against_the_previous_one(
    built_repo, prefect_server
):
    port = prefect_server["PREFECT_SERVER_API_PORT"]
    # The previous published run, as the server holds it (the session's other runs publish too).
    previous = {"accuracy": 0.5, "dropped_metric": 1.0}
    status, seeded = api(port, "POST", "/artifacts/", {
        "key": metrics.ARTIFACT_KEY, "type": "table",
        "data": json.dumps(metrics.artifact_table(previous, None)),
    })
    assert status == 201, seeded

    out = built_repo.py("scripts/flow_dvc.py", "--no-show-metrics").stdout
    assert "Metrics:" not in out and "f1_macro" not in out  # show_metrics gates only these
    _, run_id = view_at(out)
    _, published = api(port, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    published.sort(key=lambda a: a["key"] != metrics.ARTIFACT_KEY)
    assert [(a["key"], a["type"]) for a in published] == [(metrics.ARTIFACT_KEY, "table"),
                                                          ("pipeline-plots", "markdown")]
    values = json.loads(built_repo.read("reports/metrics.json"))
    assert json.loads(published[0]["data"]) == [
        {"metric": "accuracy", "value": round(values["accuracy"], 4), "previous": 0.5,
         "change": f"{values['accuracy'] - 0.5:+.4f}"},
        {"metric": "f1_macro", "value": round(values["f1_macro"], 4), "previous": None, "change": "new"},
    ]
    seeded_at = datetime.fromisoformat(seeded["created"].replace("Z", "+00:00"))
    assert published[0]["description"] == (
        f"**Pipeline metrics** from `{built_repo.path}/reports/metrics.json`. *change* is against the "
        f"previous published run ({seeded_at:%Y-%m-%d %H:%M:%S} UTC)."
    )
    # `make metrics` compares with that run, from the server, and with git HEAD.
    table = built_repo.run(*MAKE, "metrics").stdout.splitlines()
    assert table[0].split() == ["metric", "value", "vs", "last", "run", "vs", "HEAD"]
    assert table[2].split()[:4] == ["accuracy", f"{values['accuracy']:.4f}", "+0.0000", "+0.0000"]
