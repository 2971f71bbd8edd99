"""An agent's heartbeat names the runs whose processes it runs; the answer says which it no longer
holds (D2, issue 9 point 4), so it kills their processes: a run on another attempt (crashed by the
reaper and retried), a run another agent claimed, a run that does not exist (here)."""

from __future__ import annotations

import uuid

from accounts.models import Role
from core.tenancy import workspace_scope
from orchestration.engine import ProposedState, ReaperPolicy, flow_run_set_state
from orchestration.services.agents import agent_heartbeat
from tests.orchestration.factories import AgentFactory

from .conftest import claimed_run, principal


def held(run, attempt=None):
    return {"id": run.pk, "attempt": attempt or run.attempt}


def test_a_run_the_agent_still_holds_is_not_lost(world_a, version_a, agent_a):
    run = claimed_run(version_a, agent_a)
    reply = agent_heartbeat(actor=principal(world_a, Role.AGENT), agent=agent_a, flow_runs=[held(run)])
    assert reply["lost_flow_run_ids"] == []


def test_a_run_retried_after_its_lease_ran_out_is_lost_to_the_old_attempt(world_a, version_a, agent_a):
    run = claimed_run(version_a, agent_a)
    with workspace_scope([run.workspace_id]):
        flow_run_set_state(actor=None, flow_run_id=run.pk, workspace_id=run.workspace_id,
                           state=ProposedState(type="CRASHED", message="lease expired"), policy=ReaperPolicy())
    reply = agent_heartbeat(actor=principal(world_a, Role.AGENT), agent=agent_a, flow_runs=[held(run, attempt=1)])
    assert reply["lost_flow_run_ids"] == [str(run.pk)]


def test_a_run_another_agent_claimed_or_an_unknown_run_is_lost(world_a, version_a, agent_a):
    other = AgentFactory(workspace=world_a.workspace, service_account=world_a.agent, name="other")
    theirs = claimed_run(version_a, other)
    unknown = uuid.uuid4()
    reply = agent_heartbeat(actor=principal(world_a, Role.AGENT), agent=agent_a,
                            flow_runs=[held(theirs), {"id": unknown, "attempt": 1}])
    assert reply["lost_flow_run_ids"] == sorted([str(theirs.pk), str(unknown)])


def test_without_runs_nothing_is_lost(world_a, agent_a):
    assert agent_heartbeat(actor=principal(world_a, Role.AGENT), agent=agent_a)["lost_flow_run_ids"] == []
