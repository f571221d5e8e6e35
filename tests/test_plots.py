"""`make plots`: the plots dvc.yaml declares, drawn offline into one page with inline SVG, for the
kit and for any DVC repository, for the workspace or against a revision."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

from conftest import MAKE, api, view_at
from kit import plots

MARK = re.compile(r'aria-roledescription="(\w+) mark"')  # one per mark Vega drew: a cell, a line


def page_svgs(page: Path) -> list[str]:
    html = page.read_text()
    # nothing to load: offline by construction
    assert not re.search(r"<script|<link|<img|\b(src|href)=\S*https?:|url\(\S*https?:", html)
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


def plot_repo(repo, path: Path) -> Path:
    """A DVC project nobody here wrote, with a plot of its own: a CSV drawn as a line."""
    path.mkdir()
    repo.run("git", "init", "-q", cwd=path)
    repo.py("-m", "dvc", "init", "-q", cwd=path)
    repo.py("-m", "dvc", "config", "--local", "core.site_cache_dir", str(path.parent / "dvc-site"), cwd=path)
    (path / "dvc.yaml").write_text("plots:\n  - loss.csv:\n      x: step\n      y: loss\n      template: linear\n")
    (path / "loss.csv").write_text("step,loss\n0,1.0\n1,0.6\n2,0.4\n3,0.3\n")
    repo.run("git", "add", "-A", cwd=path)
    repo.run("git", "commit", "-qm", "loss", cwd=path)
    return path


def test_the_kits_confusion_matrix_is_drawn_offline_for_the_workspace_and_against_a_revision(built_repo):
    out = built_repo.run(*MAKE, "plots").stdout
    page = built_repo.path / "dvc_plots" / "index.html"
    assert out.strip() == f"1 plot(s) drawn: {page}"
    [svg] = page_svgs(page)
    assert MARK.findall(svg).count("rect") >= 9 and MARK.findall(svg).count("text") == 9  # 3x3 cells, counts
    assert ">workspace<" in svg

    out = built_repo.run(*MAKE, "plots", "REV=HEAD").stdout
    [svg] = page_svgs(page)
    assert ">workspace<" in svg and ">HEAD<" in svg  # one panel per revision, as dvc plots diff draws


def test_a_foreign_repos_own_plot_is_drawn_and_bad_input_is_one_line(repo, tmp_path):
    other = plot_repo(repo, tmp_path / "other")
    (other / "loss.csv").write_text("step,loss\n0,1.0\n1,0.5\n2,0.25\n3,0.1\n")  # a change since HEAD
    repo.run(*MAKE, "plots", f"REPO={other}", "REV=HEAD")
    page = other / "dvc_plots" / "index.html"
    [svg] = page_svgs(page)
    assert MARK.findall(svg).count("line") >= 2 and ">workspace<" in svg and ">HEAD<" in svg
    assert "revisions: workspace, HEAD" in page.read_text()

    before = page.read_bytes()
    for args, error in (([f"REPO={other}", "REV=no-such-rev"], "error: unknown Git revision 'no-such-rev'"),
                        ([f"REPO={tmp_path}"], f"error: {tmp_path} is not a DVC repository (no .dvc folder)")):
        proc = repo.run(*MAKE, "plots", *args, check=False)
        assert proc.returncode != 0
        assert proc.stdout.splitlines()[0] == error
    assert page.read_bytes() == before  # earlier output intact

    (other / "dvc.yaml").write_text("stages: {}\n")
    proc = repo.run(*MAKE, "plots", f"REPO={other}", check=False)
    assert proc.returncode != 0
    assert proc.stdout.splitlines()[0] == f"error: {other}: dvc.yaml declares no plots DVC could load"


def published(port, run_id) -> dict[str, dict]:
    _, found = api(port, "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    return {a["key"]: a for a in found}


def svg_images(markdown: str) -> list[str]:
    urls = re.findall(r"\]\((data:image/svg\+xml;base64,[^)\s]+)", markdown)
    return [base64.b64decode(url.split(",", 1)[1]).decode() for url in urls]


def test_each_run_publishes_its_confusion_matrix_beside_the_previous_runs(built_repo, tmp_path):
    first = built_repo.py("scripts/flow_dvc.py", "--no-show-metrics").stdout  # Option A
    assert re.search(r"Plots: 1 published as 'pipeline-plots' \(\d+ kB; [01] drawn, [01] as the previous run's\) "
                     r"in [\d.]+ s", first)
    a = published(*view_at(first))[plots.ARTIFACT_KEY]
    assert a["type"] == "markdown"
    this = plots.artifact_images(a["data"])
    assert list(this) == ["reports/predictions.csv"]
    [svg, *_] = svg_images(a["data"])
    counts = svg.index('class="mark-text role-mark')  # the counts' group: one text per cell
    assert svg[counts:svg.index("</g>", counts)].count("<text") == 9 and 'width="380"' in svg[:300]
    # No ARIA label per mark (a quarter of the bytes): the <img> has its alt text.
    assert 'aria-roledescription="rect mark"' not in svg
    # This run's picture in the description too: the run page's Artifacts tab shows it on the card.
    assert a["description"].endswith(f"![reports/predictions.csv]({this['reports/predictions.csv'].url})")
    assert len(a["data"]) + len(a["description"]) < 60_000  # 3 pictures of 16 kB: the server's database stays small

    second = built_repo.py("scripts/flow_dvc_stages.py", "--no-show-metrics").stdout  # Option C
    b = published(*view_at(second))[plots.ARTIFACT_KEY]
    assert "| this run | previous published run (" in b["data"]
    assert f"![reports/predictions.csv (previous run)]({this['reports/predictions.csv'].url})" in b["data"]
    # A no-op: nothing the plots are drawn from changed, so neither DVC nor vl-convert is asked.
    assert re.search(r"Plots: 1 published as 'pipeline-plots' \(\d+ kB; unchanged: nothing they are drawn "
                     r"from changed since the previous run\)", second)
    assert plots.artifact_images(b["data"]) == this
    assert len(svg_images(b["data"])) == 2
    # New outputs: DVC gives the plots again, and a picture drawn from the same data is reused.
    built_repo.set_param("train.C", 0.7)
    third = built_repo.py("scripts/flow_dvc.py", "--no-show-metrics").stdout
    assert re.search(r"Plots: 1 published as 'pipeline-plots' \(\d+ kB; [01] drawn, [01] as the previous run's\)",
                     third)

    # A repository that declares no plots: the run goes on, and publishes none.
    other = tmp_path / "no-plots"
    other.mkdir()
    built_repo.run("git", "init", "-q", cwd=other)
    built_repo.py("-m", "dvc", "init", "-q", cwd=other)
    (other / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hi > out.txt\n    outs: [out.txt]\n")
    out = built_repo.py("scripts/flow_dvc.py", "--repo", str(other), "--no-show-metrics").stdout
    assert "No plots declared in dvc.yaml: no pipeline-plots artifact" in out
    assert plots.ARTIFACT_KEY not in published(*view_at(out))

    # Plots over more data than a run draws: the run says so and goes on; `make plots` draws them.
    big = plot_repo(built_repo, tmp_path / "big-plot")
    rows = "".join(f"{i},{1 / (i + 1):.6f}\n" for i in range(150_000))  # 2.4 MB
    (big / "loss.csv").write_text("step,loss\n" + rows)
    out = built_repo.py("scripts/flow_dvc.py", "--repo", str(big), "--no-show-metrics").stdout
    assert re.search(r"Plots not drawn for this run: their data is 2\.\d MB, more than a run draws \(2\.0 MB\); "
                     r"`make plots` draws them", out)
    assert plots.ARTIFACT_KEY not in published(*view_at(out))


def test_a_plot_declared_in_any_dvc_yaml_git_would_add_is_seen_without_dvc(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hi > out.txt\n    outs: [out.txt]\n")
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "dvc.yaml").write_text("plots:\n  - loss.csv\n")
    (tmp_path / ".gitignore").write_text("ignored/\n")
    assert not plots.declares_plots(plots.pipeline_files(tmp_path))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dvc.yaml").write_text("stages:\n  s:\n    cmd: 'true'\n    plots: [{loss.csv: {x: step}}]\n")
    assert plots.declares_plots(plots.pipeline_files(tmp_path))  # not yet added to git: DVC reads it all the same
