"""Task runs end with their flow run (issue 9, point 9).

When a flow run ends (COMPLETED, FAILED, CANCELLED, CRASHED) or its attempt ends (crashed and
rescheduled), the task runs it left open get a terminal state in the same transaction — CRASHED
when the flow run crashed, CANCELLED otherwise — with an end time and a history row, in one
statement however many there are. Reports of an ended run or of an old attempt are refused whole;
the next attempt starts its task runs over; RUNNING proposed twice records one RUNNING.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from core.errors import Conflict
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, db_now, flow_run_set_state
from orchestration.engine.core import Context, stale_attempt_reason
from orchestration.engine.rules import (
    TERMINAL,
    AcceptRepeatedRunningUnchanged,
    EndOpenTaskRunsWithTheirFlowRun,
    PreventTransitionsFromTerminalStates,
    StartTaskRunInNewFlowRunAttempt,
)
from orchestration.models import ConcurrencySlot, FlowRun, StateType, TaskRun, TaskRunState, WebTierBeat
from orchestration.services.reaper import reap_lost_runs
from orchestration.services.runs import flow_run_cancel
from orchestration.services.task_runs import task_run_report_batch
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory

from .conftest import ConcurrencyLimitFactory, drive, principal, refresh

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_stale_web_tier_beat(db):
    # Live servers of other modules share this database; a stale beat of one would hold the reaper.
    WebTierBeat.objects.all().delete()


@pytest.fixture
def version(flow_a):
    return FlowVersionFactory(
        flow=flow_a, workspace=flow_a.workspace, version=300_000,
        tasks=[{"key": "make", "name": "make", "tags": [], "retries": 0},
               {"key": "work", "name": "work", "tags": ["limited"], "retries": 0},
               {"key": "wait", "name": "wait", "tags": [], "retries": 0},
               {"key": "done", "name": "done", "tags": [], "retries": 0}],
    )


@pytest.fixture
def run(version, agent_a):
    """A claimed, RUNNING attempt 1 whose task runs are COMPLETED (make), RUNNING holding a tag slot
    (work), SCHEDULED for a retry (wait) and PENDING (done)."""
    ConcurrencyLimitFactory(workspace=version.workspace, tag="limited", limit=5)
    run = FlowRunFactory(flow_version=version)
    drive(run, "PENDING", agent=agent_a, lease_expires_at=db_now() + timedelta(seconds=60))
    drive(run, "RUNNING")
    return run


def _report(actor, run, attempt, *reports):  # type: ignore[no-untyped-def]
    return task_run_report_batch(actor=actor, flow_run_id=run.pk, attempt=attempt, reports=[
        {"task_key": key, "map_index": index, "state_type": state, **({"state_name": name} if name else {})}
        for key, index, state, name in reports
    ])


def _leave_open(agent, run):  # type: ignore[no-untyped-def]
    results = _report(agent, run, 1, ("make", -1, "RUNNING", ""), ("make", -1, "COMPLETED", ""),
                      ("work", -1, "RUNNING", ""), ("wait", -1, "SCHEDULED", "AwaitingRetry"),
                      ("done", -1, "PENDING", ""))
    assert all(r.status is SetStateStatus.ACCEPT for r in results), [r.reason for r in results]


def _task_runs(run) -> dict[str, TaskRun]:
    with rls_bypass():
        return {t.task_key: t for t in TaskRun.objects.unscoped().filter(flow_run=run)}


def _history(task_run) -> list[TaskRunState]:
    with rls_bypass():
        return list(TaskRunState.objects.unscoped().filter(task_run=task_run).order_by("id"))


def _slots(run) -> int:
    with rls_bypass():
        return ConcurrencySlot.objects.unscoped().filter(flow_run=run).count()


def _propose(actor, run, state_type, name="", attempt=None):  # type: ignore[no-untyped-def]
    with workspace_scope([run.workspace_id]):
        result = flow_run_set_state(actor=actor, flow_run_id=run.pk, workspace_id=run.workspace_id,
                                    state=ProposedState(type=state_type, name=name), attempt=attempt)
    refresh(run)
    return result


def _assert_closed(run, state_type: str, message_part: str) -> None:
    task_runs = _task_runs(run)
    assert task_runs["make"].state_type == "COMPLETED"  # finished task runs are left as they were
    for key in ("work", "wait", "done"):
        task_run = task_runs[key]
        assert task_run.state_type == state_type, (key, task_run.state_type)
        assert message_part in task_run.state_message
        assert task_run.end_time is not None and task_run.end_time == task_run.state_timestamp
        last = _history(task_run)[-1]
        assert (last.type, last.timestamp) == (state_type, task_run.state_timestamp)
        assert task_run.state_version == len(_history(task_run))
    assert _slots(run) == 0


# --- every ending closes the open task runs -------------------------------------------------------------


def test_a_cancelled_run_cancels_its_open_task_runs(world_a, agent, run):
    _leave_open(agent, run)
    assert _slots(run) == 1
    # when: a developer cancels, and the agent confirms
    flow_run_cancel(actor=principal(world_a, Role.DEVELOPER), flow_run=run)
    refresh(run)
    assert run.state_type == "CANCELLING" and _task_runs(run)["work"].state_type == "RUNNING"
    result = _propose(agent, run, "CANCELLED", attempt=1)
    # then
    assert result.status is SetStateStatus.ACCEPT
    _assert_closed(run, "CANCELLED", "was cancelled")


def test_a_crash_the_reaper_retries_crashes_the_attempts_open_task_runs(agent, run):
    _leave_open(agent, run)
    # when: the lease runs out
    assert reap_lost_runs(now=db_now() + timedelta(minutes=5)) == 1
    refresh(run)
    # then: the run awaits attempt 2, and attempt 1's open task runs crashed with it
    assert (run.state_type, run.state_name, run.attempt) == ("SCHEDULED", "AwaitingRetry", 2)
    _assert_closed(run, "CRASHED", "crashed on attempt 1")


def test_a_crash_without_retries_left_crashes_the_open_task_runs(agent, run):
    with rls_bypass():
        run.flow.max_crash_retries = 0
        run.flow.save(update_fields=["max_crash_retries"])
    _leave_open(agent, run)
    assert reap_lost_runs(now=db_now() + timedelta(minutes=5)) == 1
    refresh(run)
    assert run.state_type == "FAILED"
    _assert_closed(run, "CRASHED", "crashed on attempt 1")


@pytest.mark.parametrize("ending", ["FAILED", "COMPLETED"])
def test_a_finished_run_cancels_the_task_runs_it_left_open(agent, run, ending):
    _leave_open(agent, run)
    result = _propose(agent, run, ending, attempt=1)
    assert result.status is SetStateStatus.ACCEPT
    _assert_closed(run, "CANCELLED", f"ended {ending}")


def test_a_run_marked_by_hand_closes_its_open_task_runs(world_a, agent, run):
    from orchestration.services.runs import flow_run_mark

    _leave_open(agent, run)
    flow_run_mark(actor=principal(world_a, Role.ADMIN), flow_run=run, state_type="FAILED")
    refresh(run)
    _assert_closed(run, "CANCELLED", "ended FAILED")


def test_a_late_run_keeps_the_task_runs_a_restart_reset(world_a, agent, run):
    # given: a finished run restarted (its task runs go back to PENDING) and then marked late
    from orchestration.services.runs import flow_run_restart

    _leave_open(agent, run)
    _propose(agent, run, "FAILED", attempt=1)
    flow_run_restart(actor=principal(world_a, Role.DEVELOPER), flow_run=run)
    refresh(run)
    assert _task_runs(run)["work"].state_type == "PENDING"
    # when: SCHEDULED → SCHEDULED (Late) is not an ending
    result = _propose(None, run, "SCHEDULED", name="Late")
    # then
    assert result.status is SetStateStatus.ACCEPT and _task_runs(run)["work"].state_type == "PENDING"


def test_ending_a_run_announces_its_task_runs_in_one_event_after_commit(agent, run, monkeypatch,
                                                                        django_capture_on_commit_callbacks):
    _leave_open(agent, run)
    sent: list[dict] = []  # the channel layer's sender, recorded
    monkeypatch.setattr("core.events._send", lambda groups, event: sent.append({"groups": groups, **event}))
    with django_capture_on_commit_callbacks(execute=True):
        _propose(agent, run, "COMPLETED", attempt=1)
    (event,) = [e for e in sent if e["type"] == "task_run.states_changed"]
    assert sorted((t["task_key"], t["state_type"]) for t in event["data"]["task_runs"]) == [
        ("done", "CANCELLED"), ("wait", "CANCELLED"), ("work", "CANCELLED")]
    assert event["groups"] == [f"run.{run.pk}"]


# --- bounded cost ---------------------------------------------------------------------------------------


def _run_with_open_task_runs(version, agent_a, agent, count: int):  # type: ignore[no-untyped-def]
    run = FlowRunFactory(flow_version=version)
    drive(run, "PENDING", agent=agent_a)
    drive(run, "RUNNING")
    results = _report(agent, run, 1, *[("done", i, "RUNNING", "") for i in range(count)])
    assert all(r.status is SetStateStatus.ACCEPT for r in results)
    return run


def test_ending_a_run_with_1000_open_task_runs_costs_as_many_queries_as_with_3(version, agent_a, agent):
    small = _run_with_open_task_runs(version, agent_a, agent, 3)
    large = _run_with_open_task_runs(version, agent_a, agent, 1000)
    counts = {}
    for name, run in (("small", small), ("large", large)):
        with CaptureQueriesContext(connection) as queries:
            result = _propose(agent, run, "CANCELLED", attempt=1)
        assert result.status is SetStateStatus.ACCEPT
        counts[name] = len(queries)
    assert counts["large"] == counts["small"] <= 12, counts
    with rls_bypass():
        cancelled = TaskRun.objects.unscoped().filter(flow_run=large, state_type="CANCELLED", end_time__isnull=False)
        assert cancelled.count() == 1000
        assert TaskRunState.objects.unscoped().filter(task_run__flow_run=large, type="CANCELLED").count() == 1000


# --- refusals and the next attempt ----------------------------------------------------------------------


def test_reports_of_an_old_attempt_are_refused_in_the_shared_words(agent, run):
    _leave_open(agent, run)
    reap_lost_runs(now=db_now() + timedelta(minutes=5))
    refresh(run)
    with pytest.raises(Conflict) as error:
        _report(agent, run, 1, ("work", -1, "COMPLETED", ""))
    assert (error.value.code, str(error.value.message)) == ("stale_attempt", stale_attempt_reason(1, 2))
    assert _task_runs(run)["work"].state_type == "CRASHED"


def test_reports_for_an_ended_run_are_refused_whole(agent, run):
    _leave_open(agent, run)
    _propose(agent, run, "COMPLETED", attempt=1)
    with pytest.raises(Conflict) as error:
        _report(agent, run, 1, ("work", -1, "COMPLETED", ""), ("extra", -1, "RUNNING", ""))
    assert error.value.code == "run_not_held"
    assert set(_task_runs(run)) == {"make", "work", "wait", "done"}  # nothing applied, nothing created
    assert _task_runs(run)["work"].state_type == "CANCELLED"


def test_the_next_attempt_starts_its_task_runs_over(agent, agent_a, run):
    # given: attempt 1 crashed with task runs open and was rescheduled as attempt 2
    _leave_open(agent, run)
    reap_lost_runs(now=db_now() + timedelta(minutes=5))
    drive(run, "PENDING", agent=agent_a, lease_expires_at=db_now() + timedelta(seconds=60))
    drive(run, "RUNNING")
    assert run.attempt == 2
    # when: attempt 2 runs the crashed task run again, and the completed one too (its result could
    # not be loaded on the retrying machine)
    results = _report(agent, run, 2, ("work", -1, "RUNNING", ""), ("work", -1, "COMPLETED", ""),
                      ("make", -1, "RUNNING", ""), ("make", -1, "COMPLETED", ""))
    # then
    assert [r.status for r in results] == [SetStateStatus.ACCEPT] * 4, [r.reason for r in results]
    task_runs = _task_runs(run)
    for key in ("work", "make"):
        task_run = task_runs[key]
        assert (task_run.state_type, task_run.flow_run_attempt, task_run.attempt) == ("COMPLETED", 2, 1)
    assert [h.type for h in _history(task_runs["work"])] == ["RUNNING", "CRASHED", "RUNNING", "COMPLETED"]
    assert _slots(run) == 0  # work took its slot again in attempt 2 and gave it back on COMPLETED


def test_running_proposed_again_records_one_running(agent, run):
    _report(agent, run, 1, ("work", -1, "RUNNING", ""))
    before = _task_runs(run)["work"]
    # when: the same RUNNING arrives again in a new request (a new idempotency key)
    (again,) = _report(agent, run, 1, ("work", -1, "RUNNING", ""))
    # then: ACCEPT (it is running and holds its slot), and nothing recorded
    assert (again.status, again.state_type, again.details.get("code")) == (SetStateStatus.ACCEPT, "RUNNING",
                                                                          "already_running")
    after = _task_runs(run)["work"]
    assert after.state_version == before.state_version
    assert [h.type for h in _history(after)].count(StateType.RUNNING) == 1
    assert _slots(run) == 1


# --- the rules alone --------------------------------------------------------------------------------------


def _memory_task_run(state: str, flow_run_attempt: int = 1) -> TaskRun:
    return TaskRun(state_type=state, state_name=state.title(), attempt=3, flow_run_attempt=flow_run_attempt,
                   start_time=NOW, end_time=NOW if state in TERMINAL else None)


def _ctx(run, to: str, attempt: int | None) -> Context:  # type: ignore[no-untyped-def]
    return Context(run=run, proposed=ProposedState(type=to), actor=None, attempt=attempt, now=NOW)


@pytest.mark.parametrize("from_state", sorted(StateType.values))
def test_a_newer_attempt_starts_a_task_run_over_from_any_state(from_state):
    run = _memory_task_run(from_state)
    context = _ctx(run, "RUNNING", attempt=2)
    rule = StartTaskRunInNewFlowRunAttempt()
    assert rule.applies(context)
    rule.before_transition(context)
    assert (run.flow_run_attempt, run.attempt, run.start_time, run.end_time) == (2, 1, None, None)
    PreventTransitionsFromTerminalStates().before_transition(context)  # the terminal guard lets it through
    assert context.status is SetStateStatus.ACCEPT


@pytest.mark.parametrize("attempt", [None, 1])
def test_the_same_attempt_or_no_attempt_does_not_start_a_task_run_over(attempt):
    context = _ctx(_memory_task_run("CRASHED"), "RUNNING", attempt=attempt)
    assert not StartTaskRunInNewFlowRunAttempt().applies(context)


def test_running_again_in_the_same_attempt_is_accepted_unchanged():
    context = _ctx(_memory_task_run("RUNNING"), "RUNNING", attempt=1)
    rule = AcceptRepeatedRunningUnchanged()
    assert rule.applies(context)
    rule.before_transition(context)
    assert (context.status, context.unchanged, context.details) == (SetStateStatus.ACCEPT, True,
                                                                     {"code": "already_running"})


def test_running_in_a_new_attempt_is_a_new_running():
    context = _ctx(_memory_task_run("RUNNING"), "RUNNING", attempt=2)
    StartTaskRunInNewFlowRunAttempt().before_transition(context)
    assert not AcceptRepeatedRunningUnchanged().applies(context)


@pytest.mark.parametrize(("from_state", "to_state", "applies"), [
    ("RUNNING", "COMPLETED", True), ("RUNNING", "SCHEDULED", True), ("PENDING", "CANCELLED", True),
    ("SCHEDULED", "CANCELLED", True), ("SCHEDULED", "SCHEDULED", False), ("RUNNING", "RUNNING", False),
    ("COMPLETED", "SCHEDULED", False), ("CANCELLING", "CANCELLED", True),
])
def test_which_flow_run_transitions_end_open_task_runs(from_state, to_state, applies):
    run = FlowRun(state_type=from_state, state_name=from_state.title())
    assert EndOpenTaskRunsWithTheirFlowRun().applies(_ctx(run, to_state, attempt=None)) is applies
