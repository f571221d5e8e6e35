"""Option B: Prefect owns the stage DAG. Each task calls an mltoy stage function in-process; no
`dvc repro` in the path. The stages' paths, deps, outs and params come from dvc.yaml, so both
options run the same pipeline, and Prefect's cache skips a stage by DVC's rule.

    python scripts/flow_stages.py [--params PATH] [--no-show-metrics] [--fail-once]
    make run-stages [PARAMS=path] [SHOW_METRICS=0] [FAIL_ONCE=1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kit  # first: it moves to the project root, where Prefect reads prefect.toml
import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.results import ResultStore
from prefect.runtime import task_run

from mltoy import cli, pipeline
from mltoy.params import Params, load_params


@dataclass(frozen=True)
class Stage:
    """One stage of dvc.yaml, as Option B needs it."""

    name: str
    paths: dict[str, Path]  # the stage function's path arguments, parsed from the stage's cmd
    deps: tuple[str, ...]  # relative to the repository, as in dvc.yaml
    outs: tuple[str, ...]
    params: tuple[str, ...]  # dotted keys, e.g. "train.C"


def read_stages(repo: Path) -> dict[str, Stage]:
    """dvc.yaml's stages. Each cmd is parsed by the stage CLI's own parser, so a path changed in
    dvc.yaml changes here too: there is no second copy to drift."""
    stages = {}
    for name, spec in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].items():
        argv = shlex.split(spec["cmd"])
        if argv[:3] != ["python", "-m", "mltoy.cli"]:
            raise ValueError(f"dvc.yaml: stage {name!r} does not run mltoy.cli: {spec['cmd']}")
        args = cli.build_parser().parse_args(argv[3:])
        for path in [*cli.stage_paths(args).values(), *spec.get("deps", [])]:
            if not (repo / path).resolve().is_relative_to(repo.resolve()):
                raise ValueError(f"dvc.yaml: stage {name!r}: {path} is outside the repository")
        outs = [next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics", "plots") for o in spec.get(key, [])]
        stages[name] = Stage(
            name=name,
            paths={k: repo / v for k, v in cli.stage_paths(args).items()},
            deps=tuple(spec.get("deps", [])),
            outs=tuple(outs),
            params=tuple(spec.get("params", [])),
        )
    return stages


# --- caching with DVC's semantics -------------------------------------------------------------


def md5_file(path: Path) -> str | None:
    try:
        return hashlib.md5(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def param_value(params: Params, dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def outputs_state(stage: Stage) -> dict[str, str | None]:
    """What a run of the stage left behind: each output's md5 (None where it is missing)."""
    return {out: md5_file(kit.ROOT / out) for out in stage.outs}


class StageCache(CachePolicy):
    """A stage's cache key is its cmd, the md5 of each dep (its code and inputs) and the values
    of the params it reads: what DVC's dvc.lock records. A stored result holds the md5 of each
    output as the stage wrote it; when the files on disk no longer match (deleted, edited), the
    record is evicted here, so the lookup misses and the stage runs again and records afresh."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        stage: Stage = inputs["stage"]
        spec = {
            "deps": {dep: md5_file(kit.ROOT / dep) for dep in stage.deps},
            "params": {key: param_value(inputs["params"], key) for key in stage.params},
            "paths": {k: str(v.relative_to(kit.ROOT)) for k, v in stage.paths.items()},
        }
        key = f"{stage.name}-{hashlib.md5(json.dumps(spec, sort_keys=True).encode()).hexdigest()}"
        store = task_ctx.result_store
        if store.exists(key) and store.read(key).result != outputs_state(stage):
            _evict(store, key)
        return key


def _evict(store: ResultStore, key: str) -> None:
    """Delete a cache record (ResultStore has no delete in Prefect 3.9; local storage only)."""
    path = Path(store.result_storage._resolve_path(key))
    store.cache.pop(str(path), None)  # the store's in-process copy
    path.unlink(missing_ok=True)


def stage_task(name: str, **options: Any):
    """Declare a stage's task: cached by StageCache, its result (the outputs' md5) kept as JSON
    in the project's Prefect home (.prefect/storage), which `make clean` clears."""
    return task(
        name=name,
        cache_policy=StageCache(),
        persist_result=True,
        result_serializer="json",
        on_failure=[kit.on_failure],
        **options,
    )


# --- the stages as tasks ----------------------------------------------------------------------


def run_stage(stage: Stage, function, **kwargs: Any) -> dict[str, str | None]:
    get_run_logger().info("Running stage %r", stage.name)
    function(**stage.paths, **kwargs)
    return outputs_state(stage)


@stage_task("prepare")
def prepare(stage: Stage, params: Params) -> dict[str, str | None]:
    return run_stage(stage, pipeline.stage_prepare, params=params)


@stage_task("train", retries=1, retry_delay_seconds=2)
def train(stage: Stage, params: Params, fail_once: bool = False) -> dict[str, str | None]:
    if fail_once and task_run.run_count == 1:
        raise RuntimeError("Intentional one-time failure to demonstrate retries.")
    return run_stage(stage, pipeline.stage_train, params=params)


@stage_task("evaluate")
def evaluate(stage: Stage, params: Params) -> dict[str, str | None]:
    return run_stage(stage, pipeline.stage_evaluate)


@flow(name="Prefect owned stage DAG", on_failure=[kit.on_failure])
def stage_pipeline(params_path: Path = kit.ROOT / "params.yaml", fail_once: bool = False, show_metrics: bool = True) -> None:
    stages = read_stages(kit.ROOT)
    params = load_params(params_path)
    prepare(stages["prepare"], params)
    # --fail-once: train runs even when cached, so its retry shows.
    train.with_options(refresh_cache=fail_once)(stages["train"], params, fail_once=fail_once)
    evaluate(stages["evaluate"], params)
    kit.metrics_summary(stages["evaluate"].paths["metrics_path"], show=show_metrics)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = kit.flow_parser(__doc__, "fail train's first attempt, to show its retry")
    parser.add_argument("--params", type=kit.user_path, default=kit.ROOT / "params.yaml", help="params file (default: params.yaml)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return kit.run_flow(
        "flow_stages.py", kit.ROOT, stage_pipeline,
        params_path=args.params, fail_once=args.fail_once, show_metrics=args.show_metrics,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
