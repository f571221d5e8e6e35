"""DVC's plots drawn with no browser and no network: the Vega-Lite specs that `dvc plots show|diff
--json` fills with data, rendered to SVG or PNG by vl-convert, which bundles Vega and Vega-Lite
(DVC's own page loads them from a CDN, so it is blank offline). Also the self-contained HTML page
`make plots` writes, and the markdown of the `pipeline-plots` artifact."""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from kit.git import git

# One key for every run of every flow, as the metrics' table: the UI keeps the history under it.
ARTIFACT_KEY = "pipeline-plots"
THIS_RUN = "this run"
CELL_WIDTH = 380  # pixels: two side by side fit the artifact page in a 1400-pixel-wide window
# A run draws its plots for the artifact only up to this much data. DVC gives a plot's every row
# inline and Vega aggregates them: at 2M rows of iris (a 12 MB predictions.csv) that took 16 s and
# 1.5 GB, more than the pipeline's no-op. `make plots` draws any size.
MAX_DRAWN_BYTES = 2_000_000


def source_key(repo: Path, files: dict[str, str]) -> str:
    """What the plots of `repo` are drawn from, as DVC's own state database sees a file: the text
    of each of its pipeline files (`pipeline_files`), and the stat (size, mtime) of every output
    dvc.lock records and of every file a `plots:` entry names. A run that leaves all of it as the
    previous run found it (a no-op) has the previous run's plots, so it need not ask DVC (`dvc
    plots show`, 1.5 s) nor draw them again."""
    seen: list[object] = [str(repo.resolve()), CELL_WIDTH]
    for name, text in files.items():
        path = repo / name
        seen.append([name, text])
        declared = _mapping(text)
        named = plot_files(declared) if path.name == "dvc.yaml" else [
            out.get("path") for stage in (declared.get("stages") or {}).values() if isinstance(stage, dict)
            for out in stage.get("outs") or () if isinstance(out, dict)]
        for file in named:
            if isinstance(file, str) and (path.parent / file).exists():
                stat = (path.parent / file).stat()
                seen.append([name, file, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(seen).encode()).hexdigest()[:16]


def pipeline_files(repo: Path) -> dict[str, str]:
    """The text of each dvc.yaml and dvc.lock of `repo` that exists, by its path in the repo: the
    root's, and each other one git knows or would add. Read once per run, for all that follows."""
    listed = git(repo, "ls-files", "--cached", "--others", "--exclude-standard", "--",
                 "dvc.yaml", "dvc.lock", "*/dvc.yaml", "*/dvc.lock", check=False)
    names = sorted({"dvc.yaml", "dvc.lock", *(listed or "").splitlines()})
    return {name: (repo / name).read_text(errors="replace") for name in names if (repo / name).is_file()}


def declares_plots(files: dict[str, str]) -> bool:
    """Whether a dvc.yaml among `files` declares a plot. Without one, DVC is not asked (`dvc plots
    show` takes a second to answer that it has nothing)."""
    return any(plot_files(_mapping(text)) for name, text in files.items() if Path(name).name == "dvc.yaml")


def plot_files(declared: dict) -> list[str]:
    """What a dvc.yaml's plots may read, as written there: every string under its top-level
    `plots:` and under each stage's (file names hide in keys and values alike)."""
    stages = [s for s in (declared.get("stages") or {}).values() if isinstance(s, dict)]
    return _strings(declared.get("plots")) + [f for stage in stages for f in _strings(stage.get("plots"))]


def plot_data_bytes(repo: Path, files: dict[str, str]) -> int:
    """The size of the files the root dvc.yaml's plots read: what DVC would inline, row by row."""
    read = {repo / f for f in plot_files(_mapping(files.get("dvc.yaml", "")))}
    return sum(f.stat().st_size for f in read if f.is_file())


def _mapping(text: str) -> dict:
    """A dvc.yaml or dvc.lock as a mapping; empty where it is not one (DVC says what is wrong)."""
    try:
        declared = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return declared if isinstance(declared, dict) else {}


def _strings(value: object) -> list[str]:
    """Every string in a YAML value, keys included: a plot's files hide in both."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


class PlotsError(ValueError):
    """DVC could not give the plots (a bad revision, a broken dvc.yaml); one line saying why."""


@dataclass(frozen=True)
class Plot:
    """One plot as DVC declares it: its name (the file or the dvc.yaml plot id), the revisions
    its data comes from, and its Vega-Lite spec with the data inline."""

    name: str
    revisions: tuple[str, ...]
    spec: dict


def dvc_plots(repo: Path, rev: str | None = None) -> tuple[list[Plot], list[str]]:
    """The plots `repo`'s dvc.yaml declares, for the workspace (`dvc plots show`) or for REV and
    the workspace (`dvc plots diff REV`), and DVC's warnings about plots it could not load.

    DVC's CLI is its public interface to the plots with their data filled in; it runs with this
    interpreter's DVC, in the repository. Image plots (PNG files DVC shows as they are) are left
    out: they are already pictures."""
    args = ["diff", rev] if rev else ["show"]
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", *args, "--json"], cwd=repo,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line.removeprefix("ERROR: ") for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        raise PlotsError(errors[-1] if errors else f"dvc plots {' '.join(args)} exited {proc.returncode}")
    try:
        shown = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise PlotsError(f"dvc plots {' '.join(args)} --json printed no JSON") from None
    plots = [Plot(name, tuple(entry.get("revisions", ())), entry["content"])
             for name, entries in shown.get("data", {}).items()
             for entry in entries if entry.get("type") == "vega"]
    warnings = [f"{e.get('name')} at {e.get('rev')}: {e.get('msg', '').splitlines()[0]}"
                for e in shown.get("errors", [])]
    return plots, warnings


def still(spec: dict) -> dict:
    """The spec as a still picture: no input widgets (a picture has no checkbox); DVC's confusion
    template puts the counts behind one (`showValues`), so they are shown."""
    spec = copy.deepcopy(spec)
    for param in spec.get("params", []):
        if param.pop("bind", None) is not None and param.get("name") == "showValues":
            param["value"] = True
    return spec


def vegalite_version(spec: dict) -> str | None:
    """The newest bundled Vega-Lite of the major version the spec's $schema names (DVC: v5)."""
    import vl_convert

    match = re.search(r"/vega-lite/v(\d+)", spec.get("$schema", ""))
    versions = [v for v in vl_convert.get_vegalite_versions() if match and v.split(".")[0] == match.group(1)]
    return max(versions, key=lambda v: tuple(map(int, v.split(".")))) if versions else None


def to_svg(spec: dict, aria: bool = True) -> str:
    """The spec drawn as SVG text. No URL may be fetched (allowed_base_urls=[]): a spec that
    needs one fails here rather than reach for the network. Without `aria`, no ARIA labels (a
    quarter of the bytes; an SVG shown as an <img> is described by its alt text instead)."""
    import vl_convert  # here, not at import: the kit's other modules do not pay for it

    return vl_convert.vegalite_to_svg(still(spec), vl_version=vegalite_version(spec), allowed_base_urls=[],
                                      config=None if aria else {"aria": False})


def to_png(spec: dict, scale: float = 1.0) -> bytes:
    import vl_convert

    return vl_convert.vegalite_to_png(still(spec), vl_version=vegalite_version(spec), scale=scale,
                                      allowed_base_urls=[])


@dataclass(frozen=True)
class Image:
    """A plot drawn for the artifact: its data URL, and the digest of what it was drawn from."""

    url: str
    digest: str


def digest(spec: dict) -> str:
    """What a drawing depends on: the spec, the drawing's width and vl-convert's version. The same
    digest as the previous run's picture: the picture is the same, and is not drawn again."""
    import vl_convert

    seen = json.dumps([spec, CELL_WIDTH, "no aria", vl_convert.__version__], sort_keys=True)
    return hashlib.sha256(seen.encode()).hexdigest()[:16]


def draw(spec: dict, previous: Image | None = None) -> Image:
    """The spec as an image for the artifact, or `previous` where that was drawn from the same."""
    made = digest(spec)
    if previous is not None and previous.digest == made:
        return previous
    return Image(data_url(fit(to_svg(spec, aria=False), CELL_WIDTH)), made)


def fit(svg: str, width: int) -> str:
    """The SVG shown at most `width` pixels wide, scaled by its viewBox (the UI puts two side by side)."""
    match = re.match(r'(<svg\b[^>]*?)width="([\d.]+)" height="([\d.]+)"', svg)
    if not match or float(match.group(2)) <= width or "viewBox" not in svg[: match.end() + 200]:
        return svg
    height = float(match.group(3)) * width / float(match.group(2))
    return f'{match.group(1)}width="{width}" height="{height:.0f}"' + svg[match.end():]


def data_url(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def html_page(title: str, plots: list[Plot], svgs: list[str], warnings: list[str] = ()) -> str:
    """One self-contained page: each plot's SVG inline, no script, nothing loaded from anywhere."""
    parts = [f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}section{margin-bottom:2em}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p class='warning'>{html.escape(w)}</p>" for w in warnings]
    for plot, svg in zip(plots, svgs, strict=True):
        parts.append(f"<section><h2>{html.escape(plot.name)}</h2>"
                     f"<p>revisions: {html.escape(', '.join(plot.revisions))}</p>\n{svg}\n</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# An image of this run in the artifact: ![NAME (this run)](DATA-URL "DIGEST"), the digest as its title.
IMAGE = re.compile(r"!\[(?P<name>[^\]]*) \(" + THIS_RUN + r"\)\]\((?P<url>data:image/[^)\s]+)"
                   r'(?: "(?P<digest>[0-9a-f]*)")?\)')


# The source key in the artifact: a link reference definition, which markdown does not render.
SOURCE = re.compile(r"^\[pipeline-plots-source\]: #(?P<key>[0-9a-f]+)$", re.M)


def artifact_source(markdown: object) -> str | None:
    """The source key (source_key) of a published `pipeline-plots` artifact, if it has one."""
    found = SOURCE.search(markdown) if isinstance(markdown, str) else None
    return found.group("key") if found else None


def artifact_images(markdown: object) -> dict[str, Image]:
    """Each plot's image of this run in a published `pipeline-plots` artifact, by plot name;
    nothing where the artifact holds something else."""
    if not isinstance(markdown, str):
        return {}
    return {m.group("name"): Image(m.group("url"), m.group("digest") or "") for m in IMAGE.finditer(markdown)}


def artifact_description(repo: object, images: dict[str, Image]) -> str:
    """The artifact's description: what it is, and this run's pictures, which the run page's
    Artifacts tab (Prefect's V2 UI) shows on the artifact's card."""
    return (f"The plots of `{repo}`'s dvc.yaml, this run's; the artifact shows the previous run's beside.\n\n"
            + "\n\n".join(f"![{name}]({image.url})" for name, image in images.items()))


def artifact_markdown(images: dict[str, Image], previous: dict[str, Image], previous_at: str | None,
                      source: str) -> str:
    """The artifact: each plot of this run beside the previous published run's, as images whose
    source is a data URL (the UI shows them with no network and no file server)."""
    before = f"previous published run ({previous_at})" if previous_at else "previous published run"
    parts = ["**Pipeline plots** as dvc.yaml declares them, drawn by the flow (vl-convert), "
             "beside the previous published run's."]
    for name, image in images.items():
        old = f"![{name} (previous run)]({previous[name].url})" if name in previous else "none published"
        parts.append(f"### {name}\n\n| {THIS_RUN} | {before} |\n| --- | --- |\n"
                     f'| ![{name} ({THIS_RUN})]({image.url} "{image.digest}") | {old} |')
    parts.append(f"[pipeline-plots-source]: #{source}")
    return "\n\n".join(parts) + "\n"
