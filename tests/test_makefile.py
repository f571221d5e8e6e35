"""The Makefile is the kit's interface: `make help` must list every target, with a line each."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT


def test_help_is_the_default_goal_and_lists_every_target():
    makefile = (ROOT / "Makefile").read_text()
    declared = re.findall(r"^\.PHONY: ([\w-]+)", makefile, flags=re.M)
    rules = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    assert set(declared) == rules  # every rule is a documented phony target
    out = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = dict(re.findall(r"^  ([\w-]+) +(\S.*)$", out, flags=re.M))
    assert list(listed) == declared
    for target in ("setup", "data", "prefect-start", "prefect-stop", "prefect-status", "doctor",
                   "run-dvc", "run-stages", "bench", "test", "clean"):
        assert listed[target], target
    assert "keeps .venv" in listed["clean"]
