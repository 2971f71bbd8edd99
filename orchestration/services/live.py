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

from django.conf import settings
from django.db.models.functions import Now
from django.utils import timezone

from core.events import send_after_commit
from core.live.groups import agent_group, agents_group
from orchestration.models import Agent, FlowRun, StateType

# One commit (a 5,000-run bulk create) sends at most this many pushes: one per distinct
# (labels, start time), earliest first. Polling covers the rest.
MAX_PUSHES_PER_COMMIT = 50
# Runs further ahead than this are left to later pushes (the scheduler tick, a reconnect).
LOOKAHEAD = dt.timedelta(hours=1)


def work_available(*, workspace_id: Any, labels: Iterable[str], at: dt.datetime | None = None) -> None:
    send_after_commit(
        agents_group(workspace_id),
        {"type": "flowdeck.agent", "push": {"type": "work_available", "labels": sorted(set(labels)),
                                            "at": None if at is None else at.isoformat()}},
    )


def runs_available(runs: Iterable[FlowRun], *, now: dt.datetime | None = None) -> None:
    """Announce SCHEDULED runs (just created, retried, restarted, or materialised by the scheduler):
    due ones as "claim now", future ones within :data:`LOOKAHEAD` with their start time."""
    now = now or timezone.now()
    pushes: dict[tuple[Any, tuple[str, ...], dt.datetime | None], None] = {}
    for run in runs:
        if run.state_type != StateType.SCHEDULED or run.scheduled_start > now + LOOKAHEAD:
            continue
        at = None if run.scheduled_start <= now else run.scheduled_start
        pushes[(run.workspace_id, tuple(sorted(set(run.labels or []))), at)] = None
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


def upcoming_work(agent: Agent, *, limit: int = MAX_PUSHES_PER_COMMIT) -> list[dict[str, Any]]:
    """The pushes an agent socket gets when it connects: work due now, then the start times of runs
    it covers within :data:`LOOKAHEAD` (so a run scheduled before the socket connected still
    starts on time). The caller scopes the transaction to the agent's workspace."""
    runs = (
        FlowRun.objects.for_workspace(agent.workspace_id)
        .filter(state_type=StateType.SCHEDULED, scheduled_start__lte=Now() + LOOKAHEAD)
        .order_by("scheduled_start")
    )
    covered = set(agent.labels or [])
    if settings.IS_POSTGRES:
        runs = runs.filter(labels__contained_by=sorted(covered))
    now = timezone.now()
    pushes: dict[tuple[tuple[str, ...], str | None], None] = {}
    for labels, start in runs.values_list("labels", "scheduled_start")[:1000].iterator():
        if not set(labels or []) <= covered:
            continue
        pushes[(tuple(sorted(set(labels or []))), None if start <= now else start.isoformat())] = None
        if len(pushes) >= limit:
            break
    return [{"type": "work_available", "labels": list(labels), "at": at} for labels, at in pushes]
