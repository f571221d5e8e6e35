"""Option B: Prefect owns the stage DAG. Each task calls an mltoy stage function in-process; no
`dvc repro` in the path. The stages' paths, deps, outs and params come from dvc.yaml, so both
options run the same pipeline, and Prefect's cache skips a stage by DVC's rule.

    python scripts/flow_stages.py [--params PATH] [--no-show-metrics] [--fail-once]
    make run-stages [PARAMS=path] [SHOW_METRICS=0] [FAIL_ONCE=1]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect import flow, get_run_logger, task  # noqa: E402

import runs  # noqa: E402
from dvc_yaml import Stage, read_stages  # noqa: E402
from mltoy.params import Params, load_params  # noqa: E402
from retries import fail_first_attempt  # noqa: E402
from shared_tasks import metrics_summary  # noqa: E402
from stage_cache import Outputs, StageCache, outputs_state, run_cached  # noqa: E402

# --- the stages as tasks, cached by DVC's rule (stage_cache.py) -------------------------------


def stage_task(name: str, **options: Any):
    """Declare a stage's task: cached by StageCache, its result kept as JSON in the project's
    Prefect home (.prefect/storage), which `make clean` clears."""
    return task(name=name, cache_policy=StageCache(), persist_result=True, result_serializer="json", **options)


# Each task imports its stage function when it runs: pandas and joblib cost a cached run 0.5 s.
def run_stage(stage: Stage, function, **kwargs: Any) -> Outputs:
    get_run_logger().info("Running stage %r", stage.name)
    function(**stage.paths, **kwargs)
    return outputs_state(stage)


@stage_task("prepare")
def prepare(stage: Stage, params: Params) -> Outputs:
    from mltoy.pipeline import stage_prepare

    return run_stage(stage, stage_prepare, params=params)


@stage_task("train", retries=1, retry_delay_seconds=2)
def train(stage: Stage, params: Params, fail_once: bool = False) -> Outputs:
    from mltoy.pipeline import stage_train

    fail_first_attempt(fail_once)
    return run_stage(stage, stage_train, params=params)


@stage_task("evaluate")
def evaluate(stage: Stage, params: Params) -> Outputs:
    from mltoy.pipeline import stage_evaluate

    return run_stage(stage, stage_evaluate)


@flow(name="Prefect owned stage DAG")
def stage_pipeline(params_path: Path = project.ROOT / project.PARAMS, fail_once: bool = False,
                   show_metrics: bool = True) -> None:
    stages = read_stages(project.ROOT)
    params = load_params(params_path)
    prepared = run_cached(prepare, stages["prepare"], params)
    trained = run_cached(train, stages["train"], params, fail_once=fail_once, wait_for=[prepared])
    evaluated = run_cached(evaluate, stages["evaluate"], params, wait_for=[trained])
    metrics_summary(stages["evaluate"].paths["metrics_path"], show=show_metrics, wait_for=[evaluated])


def main(argv: list[str]) -> int:
    parser = runs.flow_parser(__doc__, "fail train's first attempt, to show its retry")
    parser.add_argument("--params", type=project.user_path, default=project.ROOT / project.PARAMS,
                        help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    return runs.run_flow("flow_stages.py", project.ROOT, stage_pipeline,
                         params_path=args.params, fail_once=args.fail_once, show_metrics=args.show_metrics)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
