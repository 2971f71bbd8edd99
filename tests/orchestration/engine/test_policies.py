"""The policies as a whole, over every (from, to) pair of state types, through the engine's entry
point: given a run in FROM, when TO is proposed, then the outcome is the one the state machine
promises, and an accepted transition adds exactly one history row and one state version."""

from __future__ import annotations

import itertools

import pytest

from accounts.models import Role
from core.tenancy import workspace_scope
from orchestration.engine import (
    CorePolicy,
    ForcePolicy,
    ProposedState,
    ReaperPolicy,
    SetStateStatus,
    TaskPolicy,
    flow_run_set_state,
    task_run_set_state,
)
from orchestration.engine.rules import ACTIVE, TERMINAL
from orchestration.models import StateType
from tests.orchestration.factories import FlowRunFactory, TaskRunFactory

from .conftest import drive, history, principal, refresh

ALL = list(StateType.values)
PAIRS = list(itertools.product(ALL, ALL))


def flow_run_in(version, agent, state: str):
    run = FlowRunFactory(flow_version=version)
    if state != "SCHEDULED":
        drive(run, state, agent=agent, cancellation_requested=state == "CANCELLING")
    return run


def propose_flow(run, to: str, policy, actor=None):
    with workspace_scope([run.workspace_id]):
        result = flow_run_set_state(actor=actor, flow_run_id=run.pk, state=ProposedState(type=to),
                                    workspace_id=run.workspace_id, policy=policy, attempt=run.attempt)
    refresh(run)
    return result


def core_expected(from_state: str, to: str) -> tuple[SetStateStatus, str]:
    if from_state in TERMINAL:
        return SetStateStatus.REJECT, from_state
    if from_state == "CANCELLING" and to not in ("CANCELLED", "CRASHED", "FAILED"):
        return SetStateStatus.REJECT, from_state
    if to == "CRASHED" and from_state != "CANCELLING":
        return SetStateStatus.ACCEPT, "SCHEDULED"  # crash retried while attempts remain
    return SetStateStatus.ACCEPT, to


@pytest.mark.parametrize(("from_state", "to"), PAIRS)
def test_core_policy_for_the_claiming_agent(world_a, version_a, agent_a, from_state, to):
    run = flow_run_in(version_a, agent_a, from_state)
    before_version, before_rows = run.state_version, len(history(run))
    result = propose_flow(run, to, CorePolicy(), principal(world_a, Role.AGENT))
    status, final = core_expected(from_state, to)
    assert (result.status, run.state_type) == (status, final), result.reason
    accepted = result.status is SetStateStatus.ACCEPT
    assert run.state_version == before_version + accepted
    assert len(history(run)) == before_rows + accepted == run.state_version


@pytest.mark.parametrize(("from_state", "to"), PAIRS)
def test_reaper_policy_only_crashes_active_runs(version_a, agent_a, from_state, to):
    run = flow_run_in(version_a, agent_a, from_state)
    result = propose_flow(run, to, ReaperPolicy())
    if from_state in ACTIVE and to == "CRASHED":
        assert result.status is SetStateStatus.ACCEPT
        assert run.state_type == ("CRASHED" if from_state == "CANCELLING" else "SCHEDULED")
    else:
        assert result.status is SetStateStatus.REJECT and run.state_type == from_state


@pytest.mark.parametrize(("from_state", "to"), PAIRS)
def test_force_policy_sets_any_state(version_a, agent_a, from_state, to):
    run = flow_run_in(version_a, agent_a, from_state)
    result = propose_flow(run, to, ForcePolicy(), None)
    assert (result.status, run.state_type) == (SetStateStatus.ACCEPT, to)
    assert (run.end_time is not None) == (to in TERMINAL)


@pytest.mark.parametrize(("from_state", "to"), PAIRS)
def test_task_policy(run_a, from_state, to):
    task_run = TaskRunFactory(flow_run=run_a, task_key="extract")  # the version's task, retries 0
    if from_state != "PENDING":
        drive(task_run, from_state)
    before = task_run.state_version
    with workspace_scope([run_a.workspace_id]):
        result = task_run_set_state(actor=None, task_run_id=task_run.pk, state=ProposedState(type=to),
                                    workspace_id=run_a.workspace_id, policy=TaskPolicy())
    refresh(task_run)
    if from_state in TERMINAL:
        assert (result.status, task_run.state_type) == (SetStateStatus.REJECT, from_state)
    else:
        assert (result.status, task_run.state_type) == (SetStateStatus.ACCEPT, to)
        recorded = (from_state, to) != ("RUNNING", "RUNNING")  # a repeated RUNNING records nothing
        assert task_run.state_version == before + recorded == len(history(task_run))


def test_the_default_policies_are_core_for_flow_runs_and_task_for_task_runs(run_a):
    drive(run_a, "COMPLETED")
    task_run = TaskRunFactory(flow_run=run_a, task_key="extract")
    drive(task_run, "COMPLETED")
    with workspace_scope([run_a.workspace_id]):
        flow_result = flow_run_set_state(actor=None, flow_run_id=run_a.pk, state=ProposedState(type="RUNNING"),
                                         workspace_id=run_a.workspace_id)
        task_result = task_run_set_state(actor=None, task_run_id=task_run.pk, state=ProposedState(type="RUNNING"),
                                         workspace_id=run_a.workspace_id)
    assert flow_result.status is task_result.status is SetStateStatus.REJECT


def test_a_stale_attempt_is_aborted_with_409_and_changes_nothing(world_a, version_a, agent_a):
    run = flow_run_in(version_a, agent_a, "RUNNING")
    with workspace_scope([run.workspace_id]):
        result = flow_run_set_state(actor=principal(world_a, Role.AGENT), flow_run_id=run.pk, attempt=run.attempt + 1,
                                    state=ProposedState(type="COMPLETED"), workspace_id=run.workspace_id)
    refresh(run)
    assert (result.status, result.http_status, result.details["code"]) == (SetStateStatus.ABORT, 409, "stale_attempt")
    assert run.state_type == "RUNNING"


def test_crash_retries_run_out_into_failed_with_the_reason(version_a, agent_a):
    """D5: crashed and retried while attempts remain (max_crash_retries=2), then FAILED."""
    run = flow_run_in(version_a, agent_a, "RUNNING")
    outcomes = []
    for _ in range(3):
        drive(run, "RUNNING")
        with workspace_scope([run.workspace_id]):
            flow_run_set_state(actor=None, flow_run_id=run.pk, policy=ReaperPolicy(), workspace_id=run.workspace_id,
                               state=ProposedState(type="CRASHED", message="lease expired"))
        refresh(run)
        outcomes.append((run.state_type, run.state_name, run.attempt))
    assert outcomes == [("SCHEDULED", "AwaitingRetry", 2), ("SCHEDULED", "AwaitingRetry", 3), ("FAILED", "Failed", 3)]
    assert "lease expired" in run.state_message and run.end_time is not None


def test_a_late_marker_proposal_is_accepted_on_a_scheduled_run(run_a):
    with workspace_scope([run_a.workspace_id]):
        result = flow_run_set_state(actor=None, flow_run_id=run_a.pk, workspace_id=run_a.workspace_id,
                                    state=ProposedState(type="SCHEDULED", name="Late"))
    refresh(run_a)
    assert result.status is SetStateStatus.ACCEPT and (run_a.state_type, run_a.state_name) == ("SCHEDULED", "Late")


def test_bookkeeping_follows_the_states(version_a, agent_a):
    run = flow_run_in(version_a, agent_a, "PENDING")
    propose_flow(run, "RUNNING", CorePolicy())
    started = run.start_time
    assert started is not None and run.run_count == 1
    propose_flow(run, "COMPLETED", CorePolicy())
    assert run.start_time == started and run.end_time is not None and run.lease_expires_at is None


def test_a_refusal_after_a_rewrite_undoes_the_rules_changes_and_cleans_up():
    """Given a policy whose first rule changes the run and whose second refuses, when a proposal is
    applied, then the run is as before and the first rule cleaned up."""
    from orchestration.engine.core import Context
    from orchestration.engine.policies import BasePolicy
    from orchestration.engine.rules import Rule
    from orchestration.models import FlowRun

    cleaned = []

    class Bump(Rule):
        def before_transition(self, context):
            context.set(attempt=context.run.attempt + 1)

        def cleanup(self, context):
            cleaned.append(True)

    class Refuse(Rule):
        def before_transition(self, context):
            context.reject("no")

    class Policy(BasePolicy):
        RULES = (Bump, Refuse)

    run = FlowRun(state_type="RUNNING", attempt=1)
    context = Context(run=run, proposed=ProposedState(type="COMPLETED"), actor=None)
    Policy().apply(context)
    assert (context.status, run.attempt, context.updates, cleaned) == (SetStateStatus.REJECT, 1, set(), [True])
