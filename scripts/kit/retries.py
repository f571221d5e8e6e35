"""What the kit's tasks retry: the demo's intentional first failure, and nothing else.

A stage that fails on its own (bad code, bad data) fails the same way again: retrying it only
doubles the wait for the same error. A repository that another DVC command holds is not a
failure here: the kit's DVC commands wait for its lock (`dvc --wait-for-lock`). So the retries a
run shows are the demo's; the deployed flow's network steps retry on their own terms.
"""

from __future__ import annotations

from prefect.runtime import task_run


class IntentionalFailure(RuntimeError):
    """The failure --fail-once asks for, to show a retry."""


def fail_first_attempt(fail_once: bool) -> None:
    """With `fail_once`, fail the calling task's first attempt (its retry then runs for real)."""
    if fail_once and task_run.run_count == 1:
        raise IntentionalFailure("Intentional one-time failure to demonstrate retries.")


def retry_demo_failure(task, run, state) -> bool:
    """A task's retry_condition_fn: retry the demo's failure only."""
    return isinstance(state.result(raise_on_failure=False), IntentionalFailure)
