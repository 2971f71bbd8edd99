"""Tag slots are what lets a tagged task run its code: a task run with a limited tag finishes
(COMPLETED or FAILED) only from RUNNING, the state it entered by taking its slots; states that run no
code (Cached, Skipped, TriggerFailed, a mapped task's parent) need none. Issue 9, point 3."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, task_run_set_state
from orchestration.engine.core import Context
from orchestration.engine.rules import RequireTagSlotsToFinish, SecureTaskConcurrencySlots
from orchestration.models import ConcurrencySlot, StateType, TaskRun
from orchestration.services.task_runs import task_run_report_batch
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, TaskRunFactory

from .conftest import ConcurrencyLimitFactory, drive, principal

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
NOT_RUNNING = sorted(set(StateType.values) - {"RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CRASHED"})


@pytest.fixture
def run(flow_a):
    version = FlowVersionFactory(
        flow=flow_a, workspace=flow_a.workspace, version=300_000,
        tasks=[{"key": "query", "name": "query", "tags": ["db"], "retries": 2, "retry_delay_seconds": 0},
               {"key": "each", "name": "each", "tags": ["db"], "retries": 0, "mapped": True},
               {"key": "free", "name": "free", "tags": ["other"], "retries": 0}],
    )
    run = FlowRunFactory(flow_version=version)
    drive(run, "RUNNING")
    ConcurrencyLimitFactory(workspace=run.workspace, tag="db", limit=1)
    return run


def ctx(task_run: TaskRun, to: str, name: str = "") -> Context:
    return Context(run=task_run, proposed=ProposedState(type=to, name=name), actor=None, now=NOW)


def enter(rule, context: Context) -> Context:
    if rule.applies(context):
        rule.before_transition(context)
    return context


def slots(run) -> list[tuple[str, int]]:
    with rls_bypass():
        return sorted(ConcurrencySlot.objects.for_workspace(run.workspace_id)
                      .values_list("task_run__task_key", "task_run__map_index"))


def report(key: str, state: str, index: int = -1, name: str = ""):
    return {"task_key": key, "map_index": index, "state_type": state, "state_name": name}


# --- the rule alone ----------------------------------------------------------------------------------


@pytest.mark.parametrize("from_state", NOT_RUNNING)
@pytest.mark.parametrize(("to_state", "name"), [("COMPLETED", "Success"), ("FAILED", "Failed"), ("FAILED", "TimedOut")])
def test_a_limited_task_that_never_ran_cannot_finish(run, from_state, to_state, name):
    task_run = TaskRunFactory(flow_run=run, task_key="query", tags=["db"], state_type=from_state)
    with workspace_scope([run.workspace_id]):
        context = enter(RequireTagSlotsToFinish(), ctx(task_run, to_state, name))
    assert context.status is SetStateStatus.REJECT
    assert context.details == {"code": "no_concurrency_slot", "tags": ["db"]}
    assert "never held a concurrency slot of tag 'db'" in context.reason


@pytest.mark.parametrize(("to_state", "name"), [("COMPLETED", "Success"), ("FAILED", "Failed")])
def test_a_running_task_holds_its_slot_and_may_finish(run, to_state, name):
    task_run = TaskRunFactory(flow_run=run, task_key="query", tags=["db"], state_type="RUNNING")
    context = ctx(task_run, to_state, name)
    assert not RequireTagSlotsToFinish().applies(context)


@pytest.mark.parametrize(("to_state", "name"), [("COMPLETED", "Cached"), ("COMPLETED", "Skipped"),
                                                ("FAILED", "TriggerFailed"), ("COMPLETED", "Mapped")])
def test_states_that_run_no_code_need_no_slot(run, to_state, name):
    task_run = TaskRunFactory(flow_run=run, task_key="query", tags=["db"], state_type="PENDING")
    with workspace_scope([run.workspace_id]):
        assert enter(RequireTagSlotsToFinish(), ctx(task_run, to_state, name)).status is SetStateStatus.ACCEPT


@pytest.mark.parametrize("tags", [[], ["other"]])
def test_a_task_without_a_limited_tag_finishes_from_any_state(run, tags):
    task_run = TaskRunFactory(flow_run=run, task_key="free", tags=tags, state_type="PENDING")
    with workspace_scope([run.workspace_id]):
        assert enter(RequireTagSlotsToFinish(), ctx(task_run, "COMPLETED", "Success")).status is SetStateStatus.ACCEPT


def test_a_mapped_parent_takes_no_slot_and_finishes_without_one(run):
    parent = TaskRunFactory(flow_run=run, task_key="each", map_index=-1, tags=["db"])
    child = TaskRunFactory(flow_run=run, task_key="each", map_index=0, tags=["db"])
    with workspace_scope([run.workspace_id]):
        assert enter(SecureTaskConcurrencySlots(), ctx(parent, "RUNNING")).status is SetStateStatus.ACCEPT
        assert slots(run) == []
        assert enter(SecureTaskConcurrencySlots(), ctx(child, "RUNNING")).status is SetStateStatus.ACCEPT
        assert slots(run) == [("each", 0)]
        assert enter(RequireTagSlotsToFinish(), ctx(parent, "FAILED", "Failed")).status is SetStateStatus.ACCEPT


def test_a_wait_asks_to_come_back_in_a_second(run):
    holder = TaskRunFactory(flow_run=run, task_key="query", map_index=0, tags=["db"])
    waiter = TaskRunFactory(flow_run=run, task_key="query", map_index=1, tags=["db"])
    with workspace_scope([run.workspace_id]):
        enter(SecureTaskConcurrencySlots(), ctx(holder, "RUNNING"))
        waiting = enter(SecureTaskConcurrencySlots(), ctx(waiter, "RUNNING"))
    assert waiting.status is SetStateStatus.WAIT
    assert (waiting.details["tag"], waiting.details["retry_after_seconds"]) == ("db", 1)


# --- through the task policy ----------------------------------------------------------------------------


def test_a_failure_without_a_slot_is_refused_not_turned_into_a_retry(run):
    task_run = TaskRunFactory(flow_run=run, task_key="query", tags=["db"])
    with workspace_scope([run.workspace_id]):
        result = task_run_set_state(actor=None, task_run_id=task_run.pk, workspace_id=run.workspace_id,
                                    state=ProposedState(type="FAILED", name="Failed"))
    assert (result.status, result.state_type, result.attempt) == (SetStateStatus.REJECT, "PENDING", 1)


def test_a_batch_that_runs_a_task_without_its_slot_is_refused_and_the_slot_stays_with_its_holder(world_a, run):
    agent = principal(world_a, Role.AGENT)
    first = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
        report("query", "RUNNING", 0), report("query", "RUNNING", 1), report("query", "COMPLETED", 1, "Success"),
    ])
    assert [r.status for r in first] == [SetStateStatus.ACCEPT, SetStateStatus.WAIT, SetStateStatus.REJECT]
    assert first[2].details["code"] == "no_concurrency_slot"
    assert slots(run) == [("query", 0)]

    second = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
        report("query", "COMPLETED", 0, "Success"), report("query", "RUNNING", 1),
        report("query", "COMPLETED", 1, "Success"),
    ])
    assert [r.status for r in second] == [SetStateStatus.ACCEPT] * 3
    assert slots(run) == []
