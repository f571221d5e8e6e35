"""The run in Prefect's UI, in a real browser: headless Chromium (Debian's `chromium`, which
.ci/run installs) renders the pages a user opens from the run's "View at" link, offline.

The session's server runs on a free port set through the settings (PREFECT_SERVER_API_PORT), the
way the UI learns its API address; with `--port` alone the UI would call port 4200."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from html import unescape
from pathlib import Path

import pytest

from conftest import MAKE, api, flow_run_name, view_at
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


class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: it reads
    commands on fd 3 and answers on fd 4, each message JSON ended by a NUL byte): what a page
    shows after its scripts ran, asked of the page itself, and a screenshot of it."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1400):
        to_chrome, self.writer = os.pipe()
        self.reader, from_chrome = os.pipe()

        def on_fds_3_and_4():
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "--remote-debugging-pipe",
             "about:blank"],
            pass_fds=(3, 4), preexec_fn=on_fds_3_and_4, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self.buffer, self.next_id = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self.next_id:
                    assert "error" not in answer, answer
                    return answer["result"]
            ready, _, _ = select.select([self.reader], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"Chromium did not answer {method}"
            chunk = os.read(self.reader, 1 << 20)
            assert chunk, f"Chromium closed the pipe on {method}"
            self.buffer += chunk

    def open(self, url: str) -> None:
        self.call("Page.navigate", self.session, url=url)

    def wait_for(self, expression: str, timeout: float = 30) -> object:
        """The value of `expression` in the page once it is truthy (polled: the UI renders late)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.call("Runtime.evaluate", self.session, expression=expression,
                              returnByValue=True)["result"].get("value")
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.25)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", self.session, format="png")["data"]))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        os.close(self.writer)
        os.close(self.reader)


# Each <img> of the page with a data URL: [alt, loaded with a size, shown width], once there are at
# least {count} and all have loaded (the UI renders an artifact's description before its body).
IMAGES = """(() => {{
  const imgs = [...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/'));
  if (imgs.length < {count} || !imgs.every(i => i.complete)) return null;
  return imgs.map(i => [i.alt, i.naturalWidth > 0 && i.naturalHeight > 0, i.getBoundingClientRect().width]);
}})()"""
SVGS = """(() => {
  const svgs = [...document.querySelectorAll('body > section > svg')];
  return svgs.length ? svgs.map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height]; }) : null;
})()"""


@pytest.fixture
def browser(tmp_path):
    tools = DevTools(tmp_path / "chromium-devtools")
    yield tools
    tools.close()


def test_the_pictures_load_with_a_size_in_chromium_the_run_plots_the_sweep_chart_and_make_plots(
    built_repo, prefect_server, browser, tmp_path
):
    """Every picture the kit makes, opened where a user opens it, offline: each image has loaded
    and has a size (not a broken image), each SVG has a box. Screenshots: tmp_path/*.png."""
    port = prefect_server["PREFECT_SERVER_API_PORT"]
    base = f"http://127.0.0.1:{port}"
    shots = {}

    def artifact(output: str, key: str) -> dict:
        _, run_id = view_at(output)
        _, found = api(port, "POST", "/artifacts/filter",
                       {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}})
        [one] = found
        return one

    def images_on(page: str, url: str, count: int = 1) -> list:
        browser.open(url)
        shown = browser.wait_for(IMAGES.format(count=count))
        assert shown, f"{page}: fewer than {count} images had loaded after 30 s"
        browser.screenshot(shots.setdefault(page, tmp_path / f"{page}.png"))
        return shown

    # Two runs of Option A: the second's artifact shows its confusion matrix and the first's.
    built_repo.py("scripts/flow_dvc.py", "--no-show-metrics")
    run = built_repo.py("scripts/flow_dvc.py", "--no-show-metrics").stdout
    plots_page = images_on("pipeline-plots", f"{base}/artifacts/artifact/{artifact(run, 'pipeline-plots')['id']}",
                           count=3)
    assert [alt for alt, _, _ in plots_page] == ["reports/predictions.csv",  # the description's, as on the card
                                                 "reports/predictions.csv (this run)",
                                                 "reports/predictions.csv (previous run)"]
    assert all(loaded and 300 <= width <= 400 for _, loaded, width in plots_page), plots_page
    # The run page's Artifacts tab (the V2 UI): this run's picture on the artifact's card.
    card = images_on("run-artifacts-tab", f"{base}/v2/runs/flow-run/{view_at(run)[1]}?tab=Artifacts")
    assert [(alt, loaded) for alt, loaded, _ in card] == [("reports/predictions.csv", True)], card
    assert card[0][2] > 200, card

    (built_repo.path / "two.yaml").write_text("objective: accuracy\ngrid:\n  train.C: [0.2, 2.0]\n")
    sweep = built_repo.py("scripts/sweep.py", "two.yaml", "--no-show-metrics").stdout
    chart = images_on("sweep-chart", f"{base}/artifacts/artifact/{artifact(sweep, 'sweep-chart')['id']}")
    assert [(alt, loaded) for alt, loaded, _ in chart] == [("sweep two", True)] and chart[0][2] > 200, chart
    browser.open(f"{base}/artifacts/artifact/{artifact(sweep, 'sweep-progress')['id']}")
    assert browser.wait_for("document.body.innerText.includes('100%') && document.body.innerText")
    browser.screenshot(shots.setdefault("sweep-progress", tmp_path / "sweep-progress.png"))

    built_repo.run(*MAKE, "plots")
    browser.open((built_repo.path / "dvc_plots" / "index.html").as_uri())
    boxes = browser.wait_for(SVGS)
    browser.screenshot(shots.setdefault("make-plots", tmp_path / "make-plots.png"))
    assert boxes and all(w > 300 and h > 300 for w, h in boxes), boxes
    for page, shot in shots.items():
        assert shot.stat().st_size > 10_000, page
