"""Option C: Prefect runs DVC's own stages, one task each, independent ones at once. DVC still
decides and records: each stale stage is reproduced by `dvc repro --single-item`, which runs its
command, writes its entry in dvc.lock and caches its outputs. Each of those is forked from one
warm process that imported DVC at the start of the run (kit/warm_dvc.py), not a new interpreter.

    python scripts/flow_dvc_stages.py [--repo PATH] [--jobs N] [--fail-once] [--no-show-metrics]
    make run-dvc-stages [JOBS=N] [FAIL_ONCE=1] [SHOW_METRICS=0]

The graph and what is stale come from DVC's API, once, in a child of the warm DVC process
(kit/dvc_graph.py); a stage DVC finds up to date ends at once as Skipped, with no DVC process.
A stage starts as soon as its own upstream stages are done, up to --jobs at a time. A stage that
fails stops only what depends on it (Prefect marks those NotReady), as `dvc repro --keep-going`
does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kit import project, warm_dvc

project.enter()  # first: Prefect reads prefect.toml from the project root when it is imported
if __name__ == "__main__":
    warm_dvc.start(project.ROOT)  # DVC's imports, in a process of their own, beside Prefect's below

from prefect import allow_failure, flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import PrefectFuture, as_completed  # noqa: E402
from prefect.states import Completed, State  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from kit import runs  # noqa: E402
from kit.dvc_graph import Plan, read_plan  # noqa: E402
from kit.dvc_internals import repro_outcome  # noqa: E402
from kit.dvc_run import run_dvc  # noqa: E402
from kit.dvc_yaml import is_kit_pipeline, metrics_file  # noqa: E402
from kit.progress import Progress  # noqa: E402
from kit.retries import fail_first_attempt, retry_demo_failure  # noqa: E402
from kit.tasks import check_inputs, metrics_summary, pipeline_plots  # noqa: E402

PROGRESS_KEY = "pipeline-progress"  # stages done out of all, on the run while it runs


class StagesFailed(RuntimeError):
    """Some stages failed; the exit status is DVC's, as for `dvc repro`."""

    def __init__(self, failed: list[str], not_run: list[str], returncode: int):
        not_run_text = f"; not run, downstream of a failure: {', '.join(not_run)}" if not_run else ""
        super().__init__(f"stages failed: {', '.join(failed)}{not_run_text}")
        self.returncode = returncode


@task(name="plan")
def plan_stages(repo: Path) -> Plan:
    """Read DVC's graph and find the stale stages."""
    plan = read_plan(repo)
    stale = [a for a in plan.order if plan.stale[a]]
    get_run_logger().info("%d stages; stale: %s", len(plan.order), ", ".join(stale) or "none")
    return plan


@task(retries=1, retry_delay_seconds=2, retry_condition_fn=retry_demo_failure, cache_policy=NO_CACHE)
def dvc_stage(repo: Path, address: str, stale: bool, fail_once: bool = False) -> State | None:
    """Reproduce one stage: `dvc --wait-for-lock repro --single-item ADDRESS`, each line DVC
    prints streamed into this task's log. DVC takes its repository lock only around its own
    bookkeeping, so stages run side by side; --wait-for-lock (run_dvc's) makes each wait its turn
    for that lock instead of failing after 3 s with its command already run and dvc.lock not
    written."""
    fail_first_attempt(fail_once)
    if not stale:
        what = f"'{address}'" if address.endswith(".dvc") else f"Stage '{address}'"
        get_run_logger().info("%s didn't change, skipping", what)
        return Completed(name="Skipped", message=f"{what} didn't change (checked in-process)")
    outcome = repro_outcome(run_dvc(repo, "repro", "--single-item", address, warm=True))
    if outcome == "cached":
        return Completed(name="Cached", message="restored from DVC's run-cache")
    if outcome == "unchanged":
        return Completed(name="Skipped", message="its upstream ran and left its inputs unchanged")
    return None


def run_in_dependency_order(plan: Plan, submit, on_done=lambda address, future: None) -> dict[str, PrefectFuture]:
    """Submit each stage as soon as its own upstream stages have finished (no waves), and wait
    for them all; `on_done` hears of each as it finishes. A stage submitted earlier would hold a
    worker while it waits, and an independent stage would queue behind it."""
    futures: dict[str, PrefectFuture] = {}
    finished: set[str] = set()
    while len(finished) < len(plan.order):
        for address in plan.order:
            if address not in futures and finished.issuperset(plan.upstream[address]):
                futures[address] = submit(address, [futures[u] for u in plan.upstream[address]])
        done = next(as_completed([f for a, f in futures.items() if a not in finished]))
        done.wait()
        address = next(a for a, f in futures.items() if f is done)
        finished.add(address)
        on_done(address, done)
    return futures


def raise_unless_completed(futures: dict[str, PrefectFuture]) -> None:
    failed = [a for a, f in futures.items() if f.state.is_failed()]
    not_run = [a for a, f in futures.items() if not f.state.is_final()]  # Prefect's NotReady
    if failed or not_run:
        returncode = next((getattr(futures[a].result(raise_on_failure=False), "returncode", 1)
                           for a in failed), 1)
        raise StagesFailed(failed, not_run, returncode)


# async: Prefect then ends the run without waiting for its heartbeat thread (kit/runs.py)
@flow(name="Prefect runs DVC stages")
async def dvc_stages_pipeline(repo: Path = project.ROOT, fail_once: bool = False, show_metrics: bool = True) -> None:
    """Run DVC's stages as Prefect tasks, independent ones in parallel."""
    with runs.pipeline_run(repo):
        warm_dvc.start(repo)  # started already when run as a script; a served or deployed run starts it here
        # The check and the plan read, and write nothing: side by side, they cost the run one of them.
        checked = check_inputs.submit(repo) if is_kit_pipeline(repo) else None
        planned = plan_stages.submit(repo)
        if checked:
            checked.result()  # bad params or data: stop here, with its error, before DVC runs anything
        plan = planned.result()
        # --fail-once fails one stage's first attempt, so its retry shows: train, in the kit.
        demo = "train" if "train" in plan.stale else plan.order[-1]

        def submit(address: str, upstream: list[PrefectFuture]) -> PrefectFuture:
            # A frozen stage does not depend on its upstream succeeding, as in `dvc repro -k`.
            wait_for = [allow_failure(f) for f in upstream] if address in plan.frozen else upstream
            return dvc_stage.with_options(name=address).submit(
                repo, address, plan.stale[address], fail_once=fail_once and address == demo, wait_for=wait_for)

        with Progress(PROGRESS_KEY, "stage", len(plan.order), f"Pipeline {repo.name!r}") as progress:
            futures = run_in_dependency_order(
                plan, submit, on_done=lambda address, future: progress.done(f"{address} {future.state.name}"))
        raise_unless_completed(futures)
        plotted = pipeline_plots.submit(repo)  # drawn while the metrics are published
        metrics_summary(metrics_file(repo), show=show_metrics)
        plotted.result()


def main(argv: list[str]) -> int:
    parser = runs.flow_parser(__doc__, "fail one stage's first attempt (train, in the kit), to show its retry")
    parser.add_argument("--repo", type=project.user_path, default=project.ROOT, help="the DVC repository to run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="stages to run at once (default: the number of CPUs)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be 1 or more")
    pipeline = dvc_stages_pipeline.with_options(task_runner=ThreadPoolTaskRunner(max_workers=args.jobs))
    return runs.run_flow(pipeline, repo=args.repo, fail_once=args.fail_once, show_metrics=args.show_metrics)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
