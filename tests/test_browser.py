"""The run in Prefect's UI, in a real browser: headless Chromium (Debian's `chromium`, which
.ci/run installs) renders the pages a user opens from the run's "View at" link, offline.

The session's server runs on a free port set through the settings (PREFECT_SERVER_API_PORT), the
way the UI learns its API address; with `--port` alone the UI would call port 4200."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from conftest import api, flow_run_name, view_at
from kit import metrics

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium; .ci/run does)"
)


def render(url: str, shot: Path, profile: Path) -> str:
    """The page's visible text after its scripts ran, and a screenshot of it."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1400,1000", "--virtual-time-budget=5000",
         f"--screenshot={shot}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0 and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", proc.stdout, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_run_its_task_runs_and_its_metrics_artifact_render_in_chromium(built_repo, prefect_server, tmp_path):
    out = built_repo.py("scripts/flow_dvc.py").stdout
    port, run_id = view_at(out)
    assert port == int(prefect_server["PREFECT_SERVER_API_PORT"])
    name = flow_run_name(out)
    tasks = sorted(set(re.findall(r"Task run '([\w -]+-\w{3})'", out)))
    assert [t.rsplit("-", 1)[0] for t in tasks] == ["check inputs", "dvc repro", "metrics summary", "pipeline plots"]
    _, artifacts = api(port, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    [artifact] = [a for a in artifacts if a["key"] == metrics.ARTIFACT_KEY]
    values = json.loads(built_repo.read("reports/metrics.json"))
    base = f"http://127.0.0.1:{port}"
    pages = {
        "view-at": f"{base}/runs/flow-run/{run_id}",  # the link in the run's log
        "task-runs": f"{base}/v2/runs/flow-run/{run_id}?tab=TaskRuns",
        "artifacts": f"{base}/v2/runs/flow-run/{run_id}?tab=Artifacts",
        "artifact": f"{base}/artifacts/artifact/{artifact['id']}",
    }
    text = {page: render(url, tmp_path / f"{page}.png", tmp_path / "chromium-profile")
            for page, url in pages.items()}
    for page, shown in text.items():
        assert "http://127.0.0.1:4200" not in shown and "Can't connect" not in shown, page
        assert name in shown, page

    assert "Completed" in text["view-at"] and "4 Task runs" in text["view-at"]
    assert "Prefect operates DVC pipeline" in text["view-at"]
    assert "4 Task runs (4 Completed)" in text["task-runs"]
    for task in tasks:
        assert task in text["task-runs"]
    assert f"TABLE {metrics.ARTIFACT_KEY}" in text["artifacts"]
    assert f"Pipeline metrics from {built_repo.path}/reports/metrics.json" in text["artifacts"]
    assert "metric value previous change" in text["artifact"]
    for metric, value in values.items():
        assert f"{metric} {round(value, 4)}" in text["artifact"]  # 4 decimals, as the terminal's table
