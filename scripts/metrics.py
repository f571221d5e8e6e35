"""Print the pipeline's metrics as a table, with the change against the last published run (the
`pipeline-metrics` artifact on the kit's Prefect server, when one answers) and against git HEAD
(what `dvc metrics diff` compares with).

    python scripts/metrics.py [PATH]     (make metrics; PATH: the metrics file dvc.yaml declares)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings  # noqa: E402

from kit import metrics  # noqa: E402
from kit.connection import server_answers, server_api_url  # noqa: E402
from kit.dvc_yaml import metrics_file  # noqa: E402


def last_published() -> dict[str, float] | str:
    """The metrics of the last run that published them, from the server, or why there are none.
    Never starts a temporary server: that takes seconds, and it would hold no other runs."""
    url = get_current_settings().api.url or server_api_url()
    if not server_answers(url, timeout=2):
        return f"no Prefect server answers at {url.removesuffix('/api')}"
    from prefect.artifacts import Artifact

    with temporary_settings(updates={PREFECT_API_URL: url}):
        latest = Artifact.get(metrics.ARTIFACT_KEY)
    values = metrics.artifact_values(latest.data) if latest else None
    return values if values is not None else "no run has published metrics on the server yet"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=project.user_path,
                        help="a metrics file (default: the one dvc.yaml declares)")
    path: Path | None = parser.parse_args(argv).path or metrics_file(project.ROOT)
    try:
        if path is None:
            raise metrics.MetricsError("dvc.yaml declares no metrics file")
        values = metrics.read_metrics(path)
        head = metrics.committed_metrics(path)
    except metrics.MetricsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    baselines = {"vs last run": last_published(),
                 "vs HEAD": head if head is not None else f"{path.name} is not committed at HEAD"}
    print(metrics.format_table(values, {title: b for title, b in baselines.items() if isinstance(b, dict)}))
    for title, why in baselines.items():
        if isinstance(why, str):
            print(f"({title.removeprefix('vs ')}: {why})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
