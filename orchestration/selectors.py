"""Read queries of the orchestration app. Every selector is given the workspace (or an object
already scoped to it); the caller's transaction must be scoped to that workspace for row-level
security (REST views are; services scope themselves)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from accounts.authz import NotFound
from orchestration.engine.core import db_now as engine_db_now
from orchestration.models import Agent, FlowRun, FlowRunState


def db_now() -> datetime:
    """The database clock (D6): leases, liveness and lateness are measured against it, never
    against an agent's or this process's clock. Inside a transaction this is its start time."""
    return engine_db_now()


def agent_list(*, workspace: Any) -> QuerySet[Agent]:
    return Agent.objects.for_workspace(workspace).order_by("name")


def agent_get(*, workspace: Any, agent_id: Any) -> Agent:
    """The workspace's agent, or NotFound (missing and not-yours look the same)."""
    agent = Agent.objects.for_workspace(workspace).filter(pk=agent_id).first()
    if agent is None:
        raise NotFound()
    return agent


def flow_run_get(*, workspace: Any, flow_run_id: Any) -> FlowRun:
    run = FlowRun.objects.for_workspace(workspace).filter(pk=flow_run_id).first()
    if run is None:
        raise NotFound()
    return run


def flow_run_states_list(*, workspace: Any, flow_run: FlowRun, after: int | None = None,
                         limit: int = 200) -> list[FlowRunState]:
    """A page of ``flow_run``'s state history, oldest first. The cursor is a state's id: states are
    written under the run's row lock, so their ids grow in the order the run passed through them,
    and ``after`` returns exactly the states a follower has not seen yet."""
    states = FlowRunState.objects.for_workspace(workspace).filter(flow_run=flow_run)
    if after is not None:
        states = states.filter(id__gt=after)
    return list(states.order_by("id")[:limit])


def agents_covering_labels(*, workspace: Any, labels: list[str]) -> list[Agent]:
    """Agents whose labels cover ``labels`` (run.labels ⊆ agent.labels, JSONB ``@>`` on
    PostgreSQL; in Python on the embedded SQLite database, which has no JSON containment)."""
    agents = Agent.objects.for_workspace(workspace)
    if settings.IS_POSTGRES:
        return list(agents.filter(labels__contains=list(labels)))
    wanted = set(labels)
    return [agent for agent in agents if wanted <= set(agent.labels)]
