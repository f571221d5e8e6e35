"""Command line for the stages, as dvc.yaml runs them: python -m mltoy.cli STAGE --PATH ... [--params]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mltoy import pipeline
from mltoy.params import ParamsError, load_params


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mltoy.cli", description=__doc__)
    stages = parser.add_subparsers(dest="stage", required=True)

    def stage(name: str, *paths: str) -> None:
        sub = stages.add_parser(name)
        for flag in paths:
            sub.add_argument(f"--{flag}", type=Path, required=True)
        sub.add_argument("--params", type=Path, default=Path("params.yaml"))

    stage("prepare", "raw", "train", "test")
    stage("train", "train", "model")
    stage("evaluate", "test", "model", "metrics", "predictions")
    return parser


def run(args: argparse.Namespace) -> None:
    """Run the stage that `args` (parsed by build_parser) names."""
    params = load_params(args.params)  # every stage validates the whole file: one schema
    if args.stage == "prepare":
        pipeline.stage_prepare(args.raw, args.train, args.test, params)
    elif args.stage == "train":
        pipeline.stage_train(args.train, args.model, params)
    else:
        pipeline.stage_evaluate(args.test, args.model, args.metrics, args.predictions)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ParamsError, pipeline.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
