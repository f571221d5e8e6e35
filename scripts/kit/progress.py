"""Progress while a flow runs: Prefect's progress artifact on the run (done out of total, updated as
each item finishes) and one line on the terminal per item.

It talks to the API with Prefect's sync client, so it works from an async flow's body as well as
from a task (create_progress_artifact would hand an async caller a coroutine)."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.runtime import flow_run


class Progress:
    """`what` done out of `total` (e.g. "trial"), shown under `key` on the flow run."""

    def __init__(self, key: str, what: str, total: int, description: str):
        self.what, self.total, self.done_count = what, total, 0
        self.description = description
        with get_client(sync_client=True) as client:
            self.artifact_id = client.create_artifact(ArtifactCreate(
                key=key, type="progress", data=0.0, flow_run_id=flow_run.id,
                description=self.line("none"),
            )).id

    def line(self, last: str) -> str:
        return f"{self.description}: {self.what} {self.done_count}/{self.total} done; last: {last}"

    def done(self, label: str) -> None:
        """One more finished (`label` says which and how); update the artifact and print a line."""
        self.done_count += 1
        percent = 100.0 * self.done_count / self.total if self.total else 100.0
        with get_client(sync_client=True) as client:
            client.update_artifact(self.artifact_id, ArtifactUpdate(data=percent, description=self.line(label)))
        print(f"{self.what} {self.done_count}/{self.total} done: {label}", flush=True)
