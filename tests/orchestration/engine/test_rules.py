"""Each orchestration rule alone: given a run and a proposal, when the rule is entered, then it
accepts, refuses or rewrites as its name says."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine.core import Context, ProposedState, SetStateStatus
from orchestration.engine.rules import (
    TERMINAL,
    CancellationWinsOverLateReports,
    ClearLease,
    CountReportedTaskRetries,
    IncrementRunCount,
    PrepareRestart,
    PreventTransitionsFromTerminalStates,
    RejectStaleAttempt,
    ReleaseSlotsOfEndedFlowRun,
    ReleaseTaskConcurrencySlots,
    RetryCrashedFlowRuns,
    RetryFailedTaskRuns,
    Rule,
    SecureFlowConcurrencySlot,
    SecurePendingToRunningByClaimingAgent,
    SecureTaskConcurrencySlots,
    SetEndTime,
    SetStartTimeOnFirstRunning,
)
from orchestration.models import ConcurrencySlot, Flow, FlowRun, StateType, TaskRun
from tests.factories import ServiceAccountFactory
from tests.orchestration.factories import AgentFactory, FlowRunFactory, TaskRunFactory

from .conftest import ConcurrencyLimitFactory, claimed_run, drive, principal

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
ALL = list(StateType.values)


def memory_run(state: str = "RUNNING", **fields) -> FlowRun:
    fields.setdefault("flow", Flow(max_crash_retries=2))
    return FlowRun(state_type=state, state_name=state.title(), **fields)


def ctx(run, to: str, *, actor=None, attempt=None, name: str = "", **details) -> Context:
    return Context(run=run, proposed=ProposedState(type=to, name=name, details=details), actor=actor,
                   attempt=attempt, now=NOW)


def enter(rule: Rule, context: Context) -> Context:
    """Enter ``rule`` the way a policy does: only when its FROM/TO states match."""
    if rule.applies(context):
        rule.before_transition(context)
    return context


# --- RejectStaleAttempt -----------------------------------------------------------------------------


def test_a_report_for_another_attempt_is_aborted_with_the_current_attempt():
    context = enter(RejectStaleAttempt(), ctx(memory_run(attempt=2), "COMPLETED", attempt=1))
    assert context.status is SetStateStatus.ABORT
    assert context.details == {"code": "stale_attempt", "current_attempt": 2}


@pytest.mark.parametrize("attempt", [None, 2])
def test_a_report_for_the_current_attempt_or_without_one_passes(attempt):
    decision = enter(RejectStaleAttempt(), ctx(memory_run(attempt=2), "COMPLETED", attempt=attempt))
    assert decision.status is SetStateStatus.ACCEPT


# --- PreventTransitionsFromTerminalStates -----------------------------------------------------------


@pytest.mark.parametrize("from_state", sorted(TERMINAL))
@pytest.mark.parametrize("to_state", ALL)
def test_terminal_states_absorb_every_proposal(from_state, to_state):
    context = enter(PreventTransitionsFromTerminalStates(), ctx(memory_run(from_state), to_state))
    assert context.status is SetStateStatus.REJECT
    assert context.details["code"] == "terminal_state"


@pytest.mark.parametrize("from_state", sorted(TERMINAL))
def test_an_explicit_restart_by_a_person_leaves_a_terminal_state(from_state, world_a):
    context = enter(PreventTransitionsFromTerminalStates(),
                    ctx(memory_run(from_state), "SCHEDULED", actor=principal(world_a), restart=True))
    assert context.status is SetStateStatus.ACCEPT


def test_an_agent_cannot_restart_a_finished_run_by_saying_so(world_a):
    context = enter(PreventTransitionsFromTerminalStates(),
                    ctx(memory_run("FAILED"), "SCHEDULED", actor=principal(world_a, Role.AGENT), restart=True))
    assert context.status is SetStateStatus.REJECT


def test_a_restart_flag_does_not_let_a_finished_run_jump_to_running():
    context = enter(PreventTransitionsFromTerminalStates(), ctx(memory_run("FAILED"), "RUNNING", restart=True))
    assert context.status is SetStateStatus.REJECT


@pytest.mark.parametrize("from_state", sorted(set(ALL) - TERMINAL))
def test_non_terminal_states_are_not_governed_by_the_terminal_rule(from_state):
    assert not PreventTransitionsFromTerminalStates().applies(ctx(memory_run(from_state), "COMPLETED"))


# --- CancellationWinsOverLateReports ------------------------------------------------------------------


@pytest.mark.parametrize("to_state", ["RUNNING", "COMPLETED", "PENDING", "SCHEDULED", "PAUSED", "CANCELLING"])
def test_a_cancelling_run_refuses_late_reports(to_state):
    context = enter(CancellationWinsOverLateReports(), ctx(memory_run("CANCELLING"), to_state))
    assert context.status is SetStateStatus.REJECT
    assert context.details["code"] == "cancelling"


@pytest.mark.parametrize("to_state", ["CANCELLED", "CRASHED", "FAILED"])
def test_a_cancelling_run_accepts_its_endings(to_state):
    decision = enter(CancellationWinsOverLateReports(), ctx(memory_run("CANCELLING"), to_state))
    assert decision.status is SetStateStatus.ACCEPT


# --- SecurePendingToRunningByClaimingAgent ------------------------------------------------------------


def _start(run, actor):
    with workspace_scope([run.workspace_id]):
        return enter(SecurePendingToRunningByClaimingAgent(), ctx(run, "RUNNING", actor=actor))


def test_the_claiming_agent_may_start_its_run(world_a, version_a, agent_a):
    run = claimed_run(version_a, agent_a)
    assert _start(run, principal(world_a, Role.AGENT)).status is SetStateStatus.ACCEPT


def test_another_agent_may_not_start_a_claimed_run(world_a, version_a, agent_a):
    run = claimed_run(version_a, agent_a)
    other = ServiceAccountFactory(workspace=world_a.workspace, name="other-agent", role=Role.AGENT)
    AgentFactory(workspace=world_a.workspace, service_account=other)
    context = _start(run, Principal(workspace=world_a.workspace, role=Role.AGENT, service_account=other))
    assert context.status is SetStateStatus.REJECT
    assert context.details["code"] == "not_claim_holder"


def test_a_person_may_not_start_a_claimed_run(world_a, version_a, agent_a):
    run = claimed_run(version_a, agent_a)
    assert _start(run, principal(world_a, Role.OWNER)).details["code"] == "not_claim_holder"


def test_an_unclaimed_pending_run_cannot_be_started_by_an_agent(world_a, run_a):
    drive(run_a, "PENDING")
    assert _start(run_a, principal(world_a, Role.AGENT)).details["code"] == "not_claimed"


def test_platform_services_may_start_a_pending_run(run_a):
    drive(run_a, "PENDING")
    assert _start(run_a, None).status is SetStateStatus.ACCEPT


# --- RetryFailedTaskRuns ---------------------------------------------------------------------------------


def _task_run(version, retries: int, delay: int, attempt: int = 1) -> TaskRun:
    with rls_bypass():
        version.tasks = [{"key": "load", "name": "load", "tags": [], "retries": retries, "retry_delay_seconds": delay}]
        version.save(update_fields=["tasks"])
    task_run = TaskRunFactory(flow_run=FlowRunFactory(flow_version=version), task_key="load")
    drive(task_run, "RUNNING", attempt=attempt)
    return task_run


def test_a_failed_task_with_retries_left_awaits_a_retry_after_its_delay(version_a):
    task_run = _task_run(version_a, retries=2, delay=30)
    with workspace_scope([task_run.workspace_id]):
        context = enter(RetryFailedTaskRuns(), ctx(task_run, "FAILED"))
    assert (context.proposed.type, context.proposed.name) == ("SCHEDULED", "AwaitingRetry")
    assert context.proposed.details["scheduled_time"] == (NOW + dt.timedelta(seconds=30)).isoformat()
    assert task_run.attempt == 2 and "attempt" in context.updates


def test_a_failed_task_without_retries_left_fails(version_a):
    task_run = _task_run(version_a, retries=2, delay=30, attempt=3)
    with workspace_scope([task_run.workspace_id]):
        context = enter(RetryFailedTaskRuns(), ctx(task_run, "FAILED"))
    assert context.proposed.type == "FAILED" and task_run.attempt == 3


def test_a_retry_the_sdk_reports_counts_as_an_attempt(version_a):
    task_run = _task_run(version_a, retries=2, delay=0)
    with workspace_scope([task_run.workspace_id]):
        context = enter(CountReportedTaskRetries(), ctx(task_run, "SCHEDULED", name="Retrying"))
    assert context.proposed.name == "Retrying" and task_run.attempt == 2 and "attempt" in context.updates


def test_the_sdks_retries_and_the_servers_are_counted_once_by_the_task_policy(version_a):
    from orchestration.engine import task_run_set_state
    from orchestration.engine.policies import TaskPolicy

    def propose(task_run, state_type: str, name: str = ""):  # type: ignore[no-untyped-def]
        with workspace_scope([task_run.workspace_id]):
            result = task_run_set_state(actor=None, task_run_id=task_run.pk, workspace_id=task_run.workspace_id,
                                        state=ProposedState(type=state_type, name=name), policy=TaskPolicy())
        return result

    # given: a task with 2 retries, retried twice by the SDK (RUNNING → SCHEDULED "Retrying")
    task_run = _task_run(version_a, retries=2, delay=0)
    for _ in range(2):
        assert propose(task_run, "SCHEDULED", "Retrying").state_type == "SCHEDULED"
        assert propose(task_run, "RUNNING").state_type == "RUNNING"
    # when: its last attempt fails
    result = propose(task_run, "FAILED")
    # then: it is failed for good, not rescheduled a third time
    assert (result.state_type, result.attempt) == ("FAILED", 3)


# --- RetryCrashedFlowRuns ------------------------------------------------------------------------------


def test_a_crashed_run_with_attempts_left_is_rescheduled_without_its_claim():
    run = memory_run("RUNNING", attempt=1, agent_id=None)
    run.lease_expires_at = NOW
    context = enter(RetryCrashedFlowRuns(), ctx(run, "CRASHED"))
    context.proposed.message  # noqa: B018
    assert (context.proposed.type, context.proposed.name) == ("SCHEDULED", "AwaitingRetry")
    assert (run.attempt, run.agent_id, run.lease_expires_at, run.scheduled_start) == (2, None, None, NOW)
    assert context.proposed.details["retry_of_attempt"] == 1


def test_a_run_that_crashed_on_its_last_attempt_fails_with_the_reason():
    run = memory_run("RUNNING", attempt=3)  # max_crash_retries=2: attempts 1, 2, 3
    context = ctx(run, "CRASHED")
    context.proposed.message = "lease expired"
    enter(RetryCrashedFlowRuns(), context)
    assert context.proposed.type == "FAILED"
    assert "lease expired" in context.proposed.message and "no crash retries left" in context.proposed.message


def test_a_crashed_run_whose_cancellation_was_requested_is_not_retried():
    context = enter(RetryCrashedFlowRuns(), ctx(memory_run("CANCELLING", cancellation_requested=True), "CRASHED"))
    assert context.proposed.type == "CRASHED"


# --- SecureFlowConcurrencySlot -------------------------------------------------------------------------


def _start_flow_run(run):
    with workspace_scope([run.workspace_id]):
        with rls_bypass():
            run = FlowRun.objects.for_workspace(run.workspace_id).select_related("flow").get(pk=run.pk)
        return enter(SecureFlowConcurrencySlot(), ctx(run, "RUNNING"))


def test_a_full_flow_waits_with_a_reason_and_a_free_one_starts(version_a):
    with rls_bypass():
        Flow.objects.for_workspace(version_a.workspace_id).filter(pk=version_a.flow_id).update(concurrency_limit=1)
    first, second = FlowRunFactory(flow_version=version_a), FlowRunFactory(flow_version=version_a)
    assert _start_flow_run(first).status is SetStateStatus.ACCEPT
    drive(first, "RUNNING")
    waiting = _start_flow_run(second)
    assert waiting.status is SetStateStatus.WAIT
    assert waiting.details["code"] == "flow_concurrency_limit" and "limit (1 running)" in waiting.reason
    drive(first, "COMPLETED")
    assert _start_flow_run(second).status is SetStateStatus.ACCEPT


def test_a_flow_without_a_limit_never_waits(version_a):
    runs = [FlowRunFactory(flow_version=version_a) for _ in range(3)]
    for run in runs[:2]:
        drive(run, "RUNNING")
    assert _start_flow_run(runs[2]).status is SetStateStatus.ACCEPT


# --- SecureTaskConcurrencySlots / ReleaseTaskConcurrencySlots ------------------------------------------


def _slots(workspace_id) -> int:
    with rls_bypass():
        return ConcurrencySlot.objects.for_workspace(workspace_id).count()


def test_a_tagged_task_takes_a_slot_and_waits_when_the_tag_is_full(run_a):
    ConcurrencyLimitFactory(workspace=run_a.workspace, tag="db", limit=1)
    first = TaskRunFactory(flow_run=run_a, tags=["db", "free"])
    second = TaskRunFactory(flow_run=run_a, tags=["db"])
    with workspace_scope([run_a.workspace_id]):
        assert enter(SecureTaskConcurrencySlots(), ctx(first, "RUNNING")).status is SetStateStatus.ACCEPT
        waiting = enter(SecureTaskConcurrencySlots(), ctx(second, "RUNNING"))
    assert waiting.status is SetStateStatus.WAIT and waiting.details["tag"] == "db"
    assert _slots(run_a.workspace_id) == 1


def test_a_task_leaving_running_gives_its_slot_back(run_a):
    ConcurrencyLimitFactory(workspace=run_a.workspace, tag="db", limit=1)
    task_run = TaskRunFactory(flow_run=run_a, tags=["db"])
    with workspace_scope([run_a.workspace_id]):
        enter(SecureTaskConcurrencySlots(), ctx(task_run, "RUNNING"))
    drive(task_run, "RUNNING")
    assert _slots(run_a.workspace_id) == 1
    rule, context = ReleaseTaskConcurrencySlots(), ctx(task_run, "COMPLETED")
    assert rule.applies(context)
    with workspace_scope([run_a.workspace_id]):
        rule.after_transition(context)
    assert _slots(run_a.workspace_id) == 0


def test_a_refused_start_returns_the_slot_it_took(run_a):
    ConcurrencyLimitFactory(workspace=run_a.workspace, tag="db", limit=1)
    task_run = TaskRunFactory(flow_run=run_a, tags=["db"])
    rule, context = SecureTaskConcurrencySlots(), ctx(task_run, "RUNNING")
    with workspace_scope([run_a.workspace_id]):
        enter(rule, context)
        rule.cleanup(context)
    assert _slots(run_a.workspace_id) == 0


# --- ReleaseSlotsOfEndedFlowRun --------------------------------------------------------------------------


@pytest.mark.parametrize("to_state", ["CRASHED", "COMPLETED", "CANCELLED", "FAILED", "SCHEDULED"])
def test_an_ended_flow_run_releases_every_slot_of_its_task_runs(run_a, to_state):
    ConcurrencyLimitFactory(workspace=run_a.workspace, tag="db", limit=5)
    drive(run_a, "RUNNING")
    for _ in range(3):
        task_run = TaskRunFactory(flow_run=run_a, tags=["db"])
        with workspace_scope([run_a.workspace_id]):  # take the slot by the rule, then enter RUNNING
            enter(SecureTaskConcurrencySlots(), ctx(task_run, "RUNNING"))
        drive(task_run, "RUNNING")
    assert _slots(run_a.workspace_id) == 3
    rule, context = ReleaseSlotsOfEndedFlowRun(), ctx(run_a, to_state)
    assert rule.applies(context)
    with workspace_scope([run_a.workspace_id]):
        rule.after_transition(context)
    assert _slots(run_a.workspace_id) == 0


# --- universal transforms --------------------------------------------------------------------------------


def test_start_time_is_set_on_the_first_running_only():
    run = memory_run("PENDING")
    enter(SetStartTimeOnFirstRunning(), ctx(run, "RUNNING"))
    assert run.start_time == NOW
    later = Context(run=run, proposed=ProposedState(type="RUNNING"), actor=None, now=NOW + dt.timedelta(hours=1))
    enter(SetStartTimeOnFirstRunning(), later)
    assert run.start_time == NOW


def test_run_count_counts_entries_into_running():
    run = memory_run("PENDING", run_count=0)
    enter(IncrementRunCount(), ctx(run, "RUNNING"))
    assert run.run_count == 1
    run.state_type = "RUNNING"
    enter(IncrementRunCount(), ctx(run, "RUNNING"))  # RUNNING → RUNNING is not a new run
    assert run.run_count == 1


@pytest.mark.parametrize("to_state", sorted(TERMINAL))
def test_end_time_is_set_on_a_terminal_state(to_state):
    run = memory_run("RUNNING")
    enter(SetEndTime(), ctx(run, to_state))
    assert run.end_time == NOW


def test_end_time_is_cleared_when_a_run_leaves_a_terminal_state():
    run = memory_run("FAILED", end_time=NOW)
    enter(SetEndTime(), ctx(run, "SCHEDULED", restart=True))
    assert run.end_time is None


@pytest.mark.parametrize("to_state", ["COMPLETED", "CRASHED", "SCHEDULED"])
def test_a_finished_or_rescheduled_run_holds_no_lease(to_state):
    run = memory_run("RUNNING", lease_expires_at=NOW)
    enter(ClearLease(), ctx(run, to_state))
    assert run.lease_expires_at is None


def test_a_running_run_keeps_its_lease():
    run = memory_run("PENDING", lease_expires_at=NOW)
    enter(ClearLease(), ctx(run, "RUNNING"))
    assert run.lease_expires_at == NOW


def test_a_restart_starts_a_fresh_attempt_without_claim_or_cancellation():
    run = memory_run("CANCELLED", attempt=2, cancellation_requested=True, end_time=NOW, lease_expires_at=NOW)
    run.agent_id = None
    enter(PrepareRestart(), ctx(run, "SCHEDULED", restart=True))
    assert (run.attempt, run.cancellation_requested, run.end_time, run.lease_expires_at, run.scheduled_start) == (
        3, False, None, None, NOW)


def test_without_the_restart_flag_nothing_is_prepared():
    run = memory_run("CANCELLED", attempt=2)
    enter(PrepareRestart(), ctx(run, "SCHEDULED"))
    assert run.attempt == 2
