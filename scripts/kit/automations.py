"""The kit's server-side automations, as code: a POST to a webhook when a kit run ends Failed or
Crashed, and Crashed for a kit run whose heartbeats stop. `make deploy` applies them.

The server does both, so they work when the run's own process cannot: after `kill -9`, or when
the worker's machine dies. Each is created, or updated in place, by name: applying them again
changes nothing twice. They act only on runs with the kit's tag (project.RUN_TAG).
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.client.schemas.objects import StateType
from prefect.events.actions import CallWebhook, ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.settings import get_current_settings

from kit.project import RUN_TAG

WEBHOOK_BLOCK = "kit-notify"  # the Webhook block that holds NOTIFY_URL, on the server
NOTIFY = "kit-notify-failed"
CRASH = "kit-crash-zombies"
# Seconds without a heartbeat before a run is marked Crashed: Prefect's documented value, three
# heartbeats at the kit's 30 s (prefect.toml). Prefect's least `within` for such a trigger: 10.
CRASH_AFTER = 90
LEAST_CRASH_AFTER = 10

KIT_RUNS = {"prefect.resource.id": f"prefect.tag.{RUN_TAG}"}
ANY_FLOW_RUN = {"prefect.resource.id": "prefect.flow-run.*"}
# The JSON body the server POSTs; Prefect fills in the {{ }} values when the automation fires.
PAYLOAD = """{
  "flow_run": "{{ flow_run.name }}",
  "flow_run_id": "{{ flow_run.id }}",
  "flow": "{{ flow.name }}",
  "deployment": "{{ deployment.name }}",
  "state": "{{ flow_run.state.name }}",
  "message": {{ flow_run.state.message | tojson }},
  "url": "{{ flow_run | ui_url }}"
}"""


def notify_on_failure(webhook_block_id) -> Automation:
    return Automation(
        name=NOTIFY,
        description=f"POST to the {WEBHOOK_BLOCK} webhook when a kit run ends Failed or Crashed.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match=ANY_FLOW_RUN,
            match_related=KIT_RUNS,
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=webhook_block_id, payload=PAYLOAD)],
    )


def crash_silent_runs(crash_after: int) -> Automation:
    """Prefect's documented pattern for runs whose process died ("detect zombie flows"): a run
    that sent a heartbeat, and then neither another one nor a final state within `crash_after`
    seconds, is marked Crashed, which in turn fires the notification.

    One addition: the watch starts at Running too, not only at the first heartbeat. The server
    records Running itself, while the run's first heartbeat leaves its process a moment later:
    a process killed in between would otherwise stay Running forever (seen here)."""
    return Automation(
        name=CRASH,
        description=f"Mark a kit run Crashed when it sends no heartbeat for {crash_after} s.",
        trigger=EventTrigger(
            after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ANY_FLOW_RUN,
            match_related=KIT_RUNS,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=crash_after),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"No heartbeat for {crash_after} s: its process or machine is gone.")],
    )


def upsert(automation: Automation) -> str:
    """Create the automation, or update the one of the same name in place; say which."""
    try:
        existing = Automation.read(name=automation.name)
    except ValueError:  # Prefect's "not found"
        automation.create()
        return "created"
    automation.id = existing.id
    automation.update()
    return "updated"


def apply(notify_url: str, crash_after: int) -> list[str]:
    """Apply the automations on the connected server; return what was done, a line each.

    Without `notify_url`, the webhook and its automation stay as an earlier `make deploy` left
    them: the URL lives on the server (in the block), so teammates need not all pass it."""
    if crash_after < LEAST_CRASH_AFTER:
        raise SystemExit(f"error: CRASH_AFTER={crash_after}: Prefect's least is {LEAST_CRASH_AFTER} s")
    lines = []
    if notify_url:
        block_id = Webhook(method="POST", url=notify_url,
                           headers={"Content-Type": "application/json"}).save(WEBHOOK_BLOCK, overwrite=True)
        lines.append(f"automation {NOTIFY}: {upsert(notify_on_failure(block_id))} "
                     f"(POSTs to the webhook block {WEBHOOK_BLOCK})")
    else:
        lines.append(f"automation {NOTIFY}: left as it is (no NOTIFY_URL given)")
    lines.append(f"automation {CRASH}: {upsert(crash_silent_runs(crash_after))} (after {crash_after} s "
                 "without a heartbeat)")
    heartbeat = get_current_settings().flows.heartbeat_frequency
    if crash_after <= heartbeat:
        lines.append(f"note: CRASH_AFTER={crash_after} s is not longer than the heartbeat ({heartbeat} s, "
                     "prefect.toml): a healthy run is marked Crashed once it runs that long")
    return lines
