"""Command line for the stages, as dvc.yaml runs them: python -m mltoy.cli STAGE --PATH ... [--params].

One subcommand per entry of the stage table (mltoy/stages.py), one option per path argument.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mltoy import InputError
from mltoy.params import load_params
from mltoy.stages import STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mltoy.cli", description=__doc__.split("\n\n")[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    for name, stage in STAGES.items():
        sub = stages.add_parser(name)
        for flag, argument in stage.paths.items():  # --FLAG lands in the function's argument
            sub.add_argument(f"--{flag}", dest=argument, type=Path, required=True)
        sub.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser


def stage_paths(args: argparse.Namespace) -> dict[str, Path]:
    """The stage function's path arguments, by name, from parsed arguments."""
    return {k: v for k, v in vars(args).items() if k not in ("stage", "params")}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        params = load_params(args.params)  # every stage validates the whole file: one schema
        STAGES[args.stage](stage_paths(args), params)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
