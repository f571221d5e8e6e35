"""Option B: Prefect owns the stage DAG. Each task calls a stage's function in-process (mltoy's
stage table); no `dvc repro` in the path. The stages, their paths, deps, outs and params come from
dvc.yaml, so both options run the same pipeline, and Prefect's cache skips a stage by DVC's rule.

    python scripts/flow_stages.py [--params PATH] [--no-show-metrics] [--fail-once]
    make run-stages [PARAMS=path] [SHOW_METRICS=0] [FAIL_ONCE=1]
"""

from __future__ import annotations

import sys
from pathlib import Path

from kit import project

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported

from prefect import flow, get_run_logger, task  # noqa: E402

from kit import runs  # noqa: E402
from kit.dvc_yaml import Stage, metrics_file, read_stages, upstream  # noqa: E402
from kit.retries import fail_first_attempt, retry_demo_failure  # noqa: E402
from kit.stage_cache import Outputs, StageCache, outputs_state, run_cached  # noqa: E402
from kit.tasks import metrics_summary, pipeline_plots  # noqa: E402
from mltoy.params import Params, load_params  # noqa: E402


# Cached by DVC's rule (kit/stage_cache.py); the result, each output's md5, is kept as JSON in the
# project's Prefect home (.prefect/storage), which `make clean` clears.
@task(cache_policy=StageCache(), persist_result=True, result_serializer="json",
      retries=1, retry_delay_seconds=2, retry_condition_fn=retry_demo_failure)
def run_stage(stage: Stage, params: Params, fail_once: bool = False) -> Outputs:
    """Run one stage's function in this process; return the md5 of each output it wrote."""
    fail_first_attempt(fail_once)
    get_run_logger().info("Running stage %r", stage.name)
    stage.run(params)
    return outputs_state(stage)


# async: Prefect then ends the run without waiting for its heartbeat thread (kit/runs.py)
@flow(name="Prefect owned stage DAG")
async def stage_pipeline(params_path: Path = project.ROOT / project.PARAMS, fail_once: bool = False,
                   show_metrics: bool = True) -> None:
    repo = project.ROOT
    with runs.pipeline_run(repo):
        stages = read_stages(repo)
        params = load_params(params_path)
        demo = "train" if "train" in stages else list(stages)[-1]  # --fail-once: the stage whose retry shows
        graph, done = upstream(stages.values()), {}
        for name, after in graph.items():  # each stage after the stages it reads from
            done[name] = await run_cached(run_stage.with_options(name=name), stages[name], params,
                                          fail_once=fail_once and name == demo, wait_for=[done[u] for u in after])
        last = [done[name] for name in graph if not any(name in after for after in graph.values())]
        plotted = pipeline_plots.submit(repo, wait_for=last)  # drawn while the metrics are published
        metrics_summary(metrics_file(repo), show=show_metrics, wait_for=last)
        plotted.result()


def main(argv: list[str]) -> int:
    parser = runs.flow_parser(__doc__, "fail train's first attempt, to show its retry")
    parser.add_argument("--params", type=project.user_path, default=project.ROOT / project.PARAMS,
                        help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    return runs.run_flow(stage_pipeline, params_path=args.params, fail_once=args.fail_once,
                         show_metrics=args.show_metrics)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
