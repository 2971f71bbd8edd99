"""Pushes to agent sockets, so agents start work without waiting for their next poll: "work available
for your labels" and "cancel run X".

The services and the engine call these inside their transaction, one line each; the push goes out
after commit (``core.events.send_after_commit``: never before the run is visible to a claim, never
for a rolled-back change, and a Redis outage never fails the write). A push is only a hint: the agent
then claims through REST as usual (D1 still decides who gets the run), and an agent that misses a
push (socket down) finds the work by polling.

``work_available`` goes to every agent socket of the workspace; each socket forwards it only when
the run's labels are covered by its agent's labels (run labels ⊆ agent labels, as the claim query
does). ``at`` is ``None`` for a run claimable now, else its scheduled start (ISO 8601): the agent
sets a timer and claims at that moment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from core.events import send_after_commit
from core.live.groups import agent_group, agents_group
from orchestration.models import FlowRun, StateType
from orchestration.selectors.agents import WORK_LOOKAHEAD, offered_work

# One commit (a 5,000-run bulk create) sends at most this many pushes: one per distinct
# (labels, start time), earliest first. Polling covers the rest.
MAX_PUSHES_PER_COMMIT = 50


def work_push(labels: Iterable[str], at: dt.datetime | None) -> dict[str, Any]:
    """The ``work_available`` message an agent socket receives."""
    return {"type": "work_available", "labels": sorted(set(labels)), "at": None if at is None else at.isoformat()}


def work_available(*, workspace_id: Any, labels: Iterable[str], at: dt.datetime | None = None) -> None:
    send_after_commit(agents_group(workspace_id), {"type": "flowdeck.agent", "push": work_push(labels, at)})


def runs_available(runs: Iterable[FlowRun], *, now: dt.datetime | None = None) -> None:
    """Announce SCHEDULED runs (just created, retried, restarted, or materialised by the scheduler):
    due ones as "claim now", future ones within ``WORK_LOOKAHEAD`` with their start time."""
    now = now or timezone.now()
    pushes: dict[tuple[Any, tuple[str, ...], dt.datetime | None], None] = {}
    for run in runs:
        if run.state_type != StateType.SCHEDULED or run.scheduled_start > now + WORK_LOOKAHEAD:
            continue
        pushes[(run.workspace_id, *offered_work(run.labels, run.scheduled_start, now))] = None
    ordered = sorted(pushes, key=lambda p: (p[2] is not None, p[2] or now))[:MAX_PUSHES_PER_COMMIT]
    for workspace_id, labels, at in ordered:
        work_available(workspace_id=workspace_id, labels=labels, at=at)


def cancel_requested(*, flow_run: FlowRun) -> None:
    """Tell the agent holding ``flow_run`` to stop it (its cancellation was requested)."""
    if flow_run.agent_id is None:
        return
    send_after_commit(
        agent_group(flow_run.agent_id),
        {"type": "flowdeck.agent", "push": {"type": "cancel", "flow_run_id": str(flow_run.pk)}},
    )
