"""Progress while a flow runs: Prefect's progress artifact on the run (done out of total, updated as
each item finishes) and one line on the terminal per item.

It talks to the API with Prefect's sync client, so it works from an async flow's body as well as
from a task (create_progress_artifact would hand an async caller a coroutine). One client serves
every update: a new one costs 0.1 s of CPU (it loads the CA certificates), on the run's path."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.runtime import flow_run


class Progress:
    """`what` done out of `total` (e.g. "trial"), shown under `key` on the flow run, while the
    `with` block runs."""

    def __init__(self, key: str, what: str, total: int, description: str):
        self.key, self.what, self.total, self.done_count = key, what, total, 0
        self.description = description
        self._client = get_client(sync_client=True)

    def __enter__(self) -> Progress:
        self._client.__enter__()
        self.artifact_id = self._client.create_artifact(ArtifactCreate(
            key=self.key, type="progress", data=0.0, flow_run_id=flow_run.id, description=self.line("none"),
        )).id
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.__exit__(*exc)

    def line(self, last: str) -> str:
        return f"{self.description}: {self.what} {self.done_count}/{self.total} done; last: {last}"

    def done(self, label: str) -> None:
        """One more finished (`label` says which and how); update the artifact and print a line."""
        self.done_count += 1
        percent = 100.0 * self.done_count / self.total if self.total else 100.0
        self._client.update_artifact(self.artifact_id, ArtifactUpdate(data=percent, description=self.line(label)))
        print(f"{self.what} {self.done_count}/{self.total} done: {label}", flush=True)
