"""A small DVC repository shaped like a diamond, for Option C's tests and `make bench`:

    data/seed.txt.dvc -> first -> left  (sleeps)  -> last -> sub/dvc.yaml:report
                               -> right (sleeps)  ->
                               -> fold@1, fold@2 (a foreach; sleep 1 s) ->

left and right are independent, so a parallel run takes one sleep where `dvc repro` takes two.
Every output is a function of its inputs, so a serial and a parallel run write the same dvc.lock.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DVC_YAML = """\
stages:
  first:
    cmd: cat data/seed.txt > first.txt
    deps: [data/seed.txt]
    outs: [first.txt]
  left:
    cmd: sleep {sleep} && cat first.txt > left.txt && echo left >> left.txt
    deps: [first.txt]
    outs: [left.txt]
  right:
    cmd: sleep {sleep} && cat first.txt > right.txt && echo right >> right.txt
    deps: [first.txt]
    outs: [right.txt]
  fold:
    foreach: [1, 2]
    do:
      cmd: sleep 1 && cat first.txt > fold${{item}}.txt && echo ${{item}} >> fold${{item}}.txt
      deps: [first.txt]
      outs:
        - fold${{item}}.txt
  last:
    cmd: cat left.txt right.txt fold1.txt fold2.txt > last.txt
    deps: [left.txt, right.txt, fold1.txt, fold2.txt]
    outs: [last.txt]
"""
SUB_DVC_YAML = """\
stages:
  report:
    cmd: wc -l < ../last.txt > report.txt
    deps: [../last.txt]
    outs: [report.txt]
"""
# Each stage's upstream, by the names `dvc repro` takes.
UPSTREAM = {
    "data/seed.txt.dvc": set(),
    "first": {"data/seed.txt.dvc"},
    "left": {"first"},
    "right": {"first"},
    "fold@1": {"first"},
    "fold@2": {"first"},
    "last": {"left", "right", "fold@1", "fold@2"},
    "sub/dvc.yaml:report": {"last"},
}


def make_diamond(path: Path, sleep: float, site_cache: Path) -> None:
    """A new git + DVC repository at `path`, committed, with nothing run yet."""
    def run(*args: str) -> None:
        subprocess.run(args, cwd=path, check=True, capture_output=True)

    (path / "data").mkdir(parents=True)
    (path / "sub").mkdir()
    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "config", "--local", "core.site_cache_dir", str(site_cache))
    (path / "data" / "seed.txt").write_text("seed\n")
    run(sys.executable, "-m", "dvc", "add", "-q", "data/seed.txt")
    (path / "dvc.yaml").write_text(DVC_YAML.format(sleep=sleep))
    (path / "sub" / "dvc.yaml").write_text(SUB_DVC_YAML)
    run("git", "add", "-A")
    run("git", "-c", "user.name=kit", "-c", "user.email=kit@localhost", "commit", "-qm", "diamond")
