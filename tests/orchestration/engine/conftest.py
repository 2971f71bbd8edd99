"""Fixtures and helpers for the engine tests. Runs reach a given state only through the engine
(``drive`` uses the entry point with the ForcePolicy, the way a person's "mark as" does)."""

from __future__ import annotations

from typing import Any

import factory
import pytest

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ForcePolicy, ProposedState, flow_run_set_state, task_run_set_state
from orchestration.models import ConcurrencyLimit, FlowRun, FlowRunState, TaskRun, TaskRunState
from tests.factories import TenantFactory, WorkspaceFactory
from tests.orchestration.factories import AgentFactory, FlowRunFactory, FlowVersionFactory, TaskRunFactory


class ConcurrencyLimitFactory(TenantFactory):
    class Meta:
        model = ConcurrencyLimit

    workspace = factory.SubFactory(WorkspaceFactory)
    tag = factory.Sequence(lambda n: f"tag-{n}")
    limit = 1


def principal(world: Any, role: str = Role.DEVELOPER) -> Principal:
    if role == Role.AGENT:
        return Principal(workspace=world.workspace, role=Role.AGENT, service_account=world.agent)
    return Principal(workspace=world.workspace, role=role, user=world.users[role])


def drive(run: FlowRun | TaskRun, state_type: str, name: str = "", **fields: Any) -> None:
    """Put ``run`` in ``state_type`` through the engine (ForcePolicy), then refresh it."""
    with workspace_scope([run.workspace_id]):
        setter = flow_run_set_state if isinstance(run, FlowRun) else task_run_set_state
        key = "flow_run_id" if isinstance(run, FlowRun) else "task_run_id"
        setter(actor=None, state=ProposedState(type=state_type, name=name), workspace_id=run.workspace_id,
               policy=ForcePolicy(), **{key: run.pk})
        if fields:
            type(run).objects.for_workspace(run.workspace_id).filter(pk=run.pk).update(**fields)
    refresh(run)


def refresh(run: FlowRun | TaskRun) -> None:
    with rls_bypass():
        run.refresh_from_db()


def history(run: FlowRun | TaskRun) -> list[Any]:
    with rls_bypass():
        if isinstance(run, FlowRun):
            return list(FlowRunState.objects.for_workspace(run.workspace_id).filter(flow_run=run).order_by("id"))
        return list(TaskRunState.objects.for_workspace(run.workspace_id).filter(task_run=run).order_by("id"))


@pytest.fixture
def version_a(flow_a):
    with rls_bypass():
        return flow_a.versions.get()


@pytest.fixture
def run_a(version_a) -> FlowRun:
    return FlowRunFactory(flow_version=version_a)


@pytest.fixture
def agent(world_a) -> Principal:
    """World A's agent service account, acting with the Agent role."""
    return principal(world_a, Role.AGENT)


@pytest.fixture
def agent_a(world_a):
    """An Agent row owned by world A's agent service account."""
    return AgentFactory(workspace=world_a.workspace, name="agent-a", service_account=world_a.agent)


def claimed_run(version: Any, agent: Any) -> FlowRun:
    run = FlowRunFactory(flow_version=version)
    drive(run, "PENDING", agent=agent)
    return run


__all__ = ["ConcurrencyLimitFactory", "FlowRunFactory", "FlowVersionFactory", "TaskRunFactory", "claimed_run",
           "drive", "history", "principal", "refresh"]
