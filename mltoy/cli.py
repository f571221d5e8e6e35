"""Command line for the stages, as dvc.yaml runs them: python -m mltoy.cli STAGE --PATH ... [--params]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mltoy import InputError
from mltoy.params import load_params


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mltoy.cli", description=__doc__)
    stages = parser.add_subparsers(dest="stage", required=True)

    def stage(name: str, **paths: str) -> None:
        """A subcommand whose --FLAG options land in the stage function's PATH arguments."""
        sub = stages.add_parser(name)
        for flag, dest in paths.items():
            sub.add_argument(f"--{flag}", dest=dest, type=Path, required=True)
        sub.add_argument("--params", type=Path, default=Path("params.yaml"))

    stage("prepare", raw="raw_csv", train="train_csv", test="test_csv")
    stage("train", train="train_csv", model="model_path")
    stage("evaluate", test="test_csv", model="model_path", metrics="metrics_path", predictions="predictions_path")
    return parser


def stage_paths(args: argparse.Namespace) -> dict[str, Path]:
    """The stage function's path arguments, by name, from parsed arguments."""
    return {k: v for k, v in vars(args).items() if k not in ("stage", "params")}


def run(args: argparse.Namespace) -> None:
    """Run the stage that `args` (parsed by build_parser) names."""
    from mltoy import pipeline  # here: the parser alone (Option B reads dvc.yaml with it) needs no pandas

    params = load_params(args.params)  # every stage validates the whole file: one schema
    paths = stage_paths(args)
    if args.stage == "prepare":
        pipeline.stage_prepare(**paths, params=params)
    elif args.stage == "train":
        pipeline.stage_train(**paths, params=params)
    else:
        pipeline.stage_evaluate(**paths)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
