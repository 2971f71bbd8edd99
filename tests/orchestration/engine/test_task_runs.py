"""Task-run state reports in batches."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.authz import NotFound
from accounts.models import Role
from core.errors import Conflict, InvalidInput
from core.tenancy import rls_bypass
from orchestration.engine import SetStateStatus
from orchestration.models import ConcurrencySlot, TaskRun, TaskRunState
from orchestration.services.task_runs import task_run_report_batch
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory

from .conftest import ConcurrencyLimitFactory, drive, principal


@pytest.fixture
def run(flow_a):
    version = FlowVersionFactory(
        flow=flow_a, workspace=flow_a.workspace, version=200_000,
        tasks=[{"key": "extract", "name": "extract", "tags": ["db"], "retries": 1, "retry_delay_seconds": 60},
               {"key": "load", "name": "load", "tags": [], "retries": 0}],
    )
    run = FlowRunFactory(flow_version=version)
    drive(run, "RUNNING")
    return run


def report(key: str, state: str, index: int = -1, **extra):
    return {"task_key": key, "map_index": index, "state_type": state, **extra}


def task_runs(run) -> dict[tuple[str, int], TaskRun]:
    with rls_bypass():
        return {
            (t.task_key, t.map_index): t for t in TaskRun.objects.for_workspace(run.workspace_id).filter(flow_run=run)
        }


def test_a_batch_creates_task_runs_on_first_sight_and_applies_reports_in_order(agent, run):
    results = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
        report("load", "PENDING"), report("load", "RUNNING"), report("load", "COMPLETED", result_ref="s3://b/k"),
        *[report("extract", "RUNNING", i) for i in range(3)],
    ])
    assert [r.status for r in results] == [SetStateStatus.ACCEPT] * 6
    rows = task_runs(run)
    load = rows[("load", -1)]
    assert (load.state_type, load.state_version, load.result_ref) == ("COMPLETED", 3, "s3://b/k")
    assert load.start_time is not None and load.end_time is not None
    assert rows[("extract", 2)].tags == ["db"] and rows[("extract", 2)].state_type == "RUNNING"
    with rls_bypass():
        assert [s.type for s in TaskRunState.objects.for_workspace(run.workspace_id).filter(task_run=load)
                .order_by("id")] == ["PENDING", "RUNNING", "COMPLETED"]


def test_a_failed_task_with_retries_left_awaits_a_retry_then_fails(agent, run):
    task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("extract", "RUNNING")])
    first = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("extract", "FAILED")])
    assert (first[0].state_type, first[0].state_name, first[0].attempt) == ("SCHEDULED", "AwaitingRetry", 2)
    task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("extract", "RUNNING")])
    second = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("extract", "FAILED")])
    assert second[0].state_type == "FAILED"


def test_a_stale_attempt_refuses_the_batch_and_changes_nothing(agent, run):
    with pytest.raises(Conflict) as error:
        task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=2, reports=[report("load", "RUNNING")])
    assert (error.value.code, error.value.details) == ("stale_attempt", {"attempt": 1})
    assert task_runs(run) == {}


def test_a_stale_expected_version_refuses_the_batch_like_a_single_proposal(agent, run):
    """One answer for a stale version (D3), whichever entry point: 409 ``stale_state_version`` with
    the current state, and nothing of the call applied."""
    task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("load", "RUNNING")])
    with pytest.raises(Conflict) as error:
        task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
            report("extract", "RUNNING", expected_version=0), report("load", "COMPLETED", expected_version=0)])
    assert error.value.code == "stale_state_version"
    assert error.value.details == {"task_key": "load", "map_index": -1, "state_type": "RUNNING",
                                   "state_name": "Running", "state_version": 1}
    assert set(task_runs(run)) == {("load", -1)}  # extract (before the stale report) was not applied
    assert task_runs(run)[("load", -1)].state_type == "RUNNING"


def test_terminal_task_runs_refuse_reports_and_tag_limits_make_tasks_wait(agent, run):
    ConcurrencyLimitFactory(workspace=run.workspace, tag="db", limit=2)
    results = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
        report("load", "COMPLETED"), report("load", "RUNNING"),
        *[report("extract", "RUNNING", i) for i in range(3)],
    ])
    assert [r.status for r in results] == ["ACCEPT", "REJECT", "ACCEPT", "ACCEPT", "WAIT"]
    with rls_bypass():
        assert ConcurrencySlot.objects.for_workspace(run.workspace_id).count() == 2
    task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("extract", "COMPLETED", 0)])
    with rls_bypass():
        assert ConcurrencySlot.objects.for_workspace(run.workspace_id).count() == 1


def test_tasks_of_a_cancelling_flow_run_cannot_start(agent, run):
    drive(run, "CANCELLING")
    results = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("load", "RUNNING")])
    assert results[0].status is SetStateStatus.REJECT and results[0].details["code"] == "flow_run_ended"


def test_reports_for_a_finished_flow_run_are_refused_whole(agent, run):
    drive(run, "CANCELLED")
    with pytest.raises(Conflict) as error:
        task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[report("load", "RUNNING")])
    assert error.value.code == "run_not_held"
    assert task_runs(run) == {}


def test_a_batch_costs_a_fixed_number_of_queries(agent, run):
    reports = [report("load", "RUNNING", i) for i in range(200)]
    with CaptureQueriesContext(connection) as queries:
        task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=reports)
    assert len(queries) <= 12, [q["sql"][:80] for q in queries]


@pytest.mark.parametrize(("reports", "field"), [
    ([], "reports"),
    ([{"task_key": "", "state_type": "RUNNING"}], "reports[0].task_key"),
    ([{"task_key": "a", "state_type": "DONE"}], "reports[0].state_type"),
    ([{"task_key": "a", "state_type": "RUNNING", "map_index": "1"}], "reports[0].map_index"),
    ([{"task_key": "a", "state_type": "RUNNING", "result_ref": "x" * 1001}], "reports[0].result_ref"),
    ([{"task_key": "a", "state_type": "RUNNING", "payload": 1}], "reports[0]"),
])
def test_bad_reports_are_refused(agent, run, reports, field):
    with pytest.raises(InvalidInput) as error:
        task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=reports)
    assert field in error.value.details


def test_another_workspaces_run_does_not_exist(world_b, run):
    with pytest.raises(NotFound):
        task_run_report_batch(actor=principal(world_b, Role.AGENT), flow_run_id=run.pk, attempt=1,
                              reports=[report("load", "RUNNING")])
    with rls_bypass():
        assert not TaskRun.objects.unscoped().filter(flow_run_id=run.pk).exists()  # nothing written
