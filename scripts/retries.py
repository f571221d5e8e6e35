"""What the kit's tasks retry: the demo's intentional first failure, and what is transient.

A stage that fails on its own (bad code, bad data) fails the same way again: retrying it only
doubles the wait for the same error. So tasks retry only failures that say they are transient.
"""

from __future__ import annotations

from prefect.runtime import task_run


class IntentionalFailure(RuntimeError):
    """The failure --fail-once asks for, to show a retry."""


def fail_first_attempt(fail_once: bool) -> None:
    """With `fail_once`, fail the calling task's first attempt (its retry then runs for real)."""
    if fail_once and task_run.run_count == 1:
        raise IntentionalFailure("Intentional one-time failure to demonstrate retries.")


def retry_if_transient(task, run, state) -> bool:
    """A task's retry_condition_fn: retry the demo's failure, and errors marked `transient`
    (DVC finding its repository locked by another DVC command)."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, IntentionalFailure) or getattr(exc, "transient", False)
