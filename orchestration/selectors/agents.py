"""Agents of a workspace, and the work waiting for one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from accounts.authz import NotFound, Principal, authorize
from core.rows import by_id
from orchestration.models import Agent, FlowRun, StateType

from .projects import parse_id


def agents_of(principal: Principal) -> QuerySet[Agent]:
    """The agents of the principal's workspace, by name."""
    authorize(principal, "project:read", principal.workspace)
    return Agent.objects.for_workspace(principal.workspace).order_by("name", "id")


def access_agent(principal: Principal, agent_id: Any, action: str = "project:read") -> Agent:
    """One agent of the principal's workspace, if its role allows ``action`` there (an agent's own
    calls pass ``agent:heartbeat`` and the like); NotFound for a bad id, a missing agent or another
    workspace's."""
    authorize(principal, action, principal.workspace)
    agent = by_id(Agent, principal.workspace, parse_id(agent_id))
    if agent is None:
        raise NotFound()
    return agent


def agents_covering_labels(workspace: Any, labels: Iterable[str]) -> list[Agent]:
    """The workspace's agents that carry every one of ``labels`` (JSONB containment on PostgreSQL;
    SQLite has none, so the embedded database compares in Python)."""
    agents = Agent.objects.for_workspace(workspace)
    wanted = list(labels)
    if settings.IS_POSTGRES:
        return list(agents.filter(labels__contains=wanted))
    return [agent for agent in agents if set(wanted) <= set(agent.labels)]


# Runs further ahead than this are not announced to agents yet (a later push or a reconnect will).
WORK_LOOKAHEAD = dt.timedelta(hours=1)
# How many of the soonest waiting runs :func:`upcoming_work` looks at.
_UPCOMING_SCAN = 1000

WorkItem = tuple[tuple[str, ...], dt.datetime | None]


def offered_work(labels: Iterable[str] | None, scheduled_start: dt.datetime, now: dt.datetime) -> WorkItem:
    """What a SCHEDULED run offers agents: its labels (sorted, each once), and when to claim it:
    None for now (it is due), else its scheduled start."""
    return tuple(sorted(set(labels or []))), None if scheduled_start <= now else scheduled_start


def upcoming_work(agent: Agent, *, limit: int) -> list[WorkItem]:
    """The distinct work items (see :func:`offered_work`) among SCHEDULED runs the agent covers
    (run labels ⊆ agent labels, as the claim does) that are due or start within
    :data:`WORK_LOOKAHEAD`, the soonest first, at most ``limit``. An agent socket gets these when
    it connects, so a run scheduled before then still starts on time. The caller scopes the
    transaction to the agent's workspace."""
    runs = (
        FlowRun.objects.for_workspace(agent.workspace_id)
        .filter(state_type=StateType.SCHEDULED, scheduled_start__lte=Now() + WORK_LOOKAHEAD)
        .order_by("scheduled_start")
    )
    covered = set(agent.labels or [])
    if settings.IS_POSTGRES:
        runs = runs.filter(labels__contained_by=sorted(covered))  # SQLite: compared below only
    now = timezone.now()
    items: dict[WorkItem, None] = {}
    for labels, start in runs.values_list("labels", "scheduled_start")[:_UPCOMING_SCAN].iterator():
        if not set(labels or []) <= covered:
            continue
        items[offered_work(labels, start, now)] = None
        if len(items) >= limit:
            break
    return list(items)


def agent_of_workspace(workspace_id: Any, agent_id: Any) -> Agent | None:
    """The agent, if it is one of the workspace's (None for a malformed id or a missing agent); for
    callers that have no principal, such as an agent socket that already checked its key."""
    try:
        return Agent.objects.for_workspace(workspace_id).filter(pk=parse_id(agent_id)).first()
    except NotFound:
        return None
