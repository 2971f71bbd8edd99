"""Agents of a workspace."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from accounts.authz import NotFound, Principal, authorize
from orchestration.models import Agent

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
    agent = Agent.objects.for_workspace(principal.workspace).filter(pk=parse_id(agent_id)).first()
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
