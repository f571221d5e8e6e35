"""Draw the plots dvc.yaml declares, offline, into one self-contained page (inline SVG, no script):
for the workspace, or with --rev against a revision or experiment, as `dvc plots diff REV` does.

    python scripts/plots.py [--rev REV] [--repo PATH] [--out FILE]
    make plots [REV=HEAD~1] [REPO=path]

The page is REPO/dvc_plots/index.html unless --out says otherwise (where `dvc plots show` writes
its own, which needs the internet to draw anything).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit import project
from kit.plots import PlotsError, dvc_plots, html_page, to_svg


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help="a git revision or DVC experiment to compare the workspace with")
    parser.add_argument("--repo", type=project.user_path, default=project.ROOT, help="the DVC repository")
    parser.add_argument("--out", type=project.user_path, help="the page to write (default: REPO/dvc_plots/index.html)")
    args = parser.parse_args(argv)
    repo: Path = args.repo
    if not (repo / ".dvc").is_dir():
        print(f"error: {repo} is not a DVC repository (no .dvc folder)", file=sys.stderr)
        return 1
    try:
        plots, warnings = dvc_plots(repo, args.rev)
        if not plots:
            raise PlotsError(f"{repo}: dvc.yaml declares no plots DVC could load"
                             + (f" ({'; '.join(warnings)})" if warnings else ""))
        svgs = [to_svg(plot.spec) for plot in plots]
    except (PlotsError, ValueError) as exc:  # vl-convert raises ValueError on a spec it cannot draw
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out: Path = args.out or repo / "dvc_plots" / "index.html"
    title = f"DVC plots: {repo.name}" + (f", {args.rev} against the workspace" if args.rev else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html_page(title, plots, svgs, warnings), encoding="utf-8")
    tmp.replace(out)
    print(f"{len(plots)} plot(s) drawn: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
