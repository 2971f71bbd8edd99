"""The batch of task-run reports goes through the engine's steps: the same answer for a stale
version as a single proposal, and the same history rows and events as one call per report."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction

from core.errors import Conflict
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import (
    ProposedState,
    SetStateStatus,
    TaskPolicy,
    TaskRunReport,
    task_run_set_state,
    task_run_set_states,
)
from orchestration.models import TaskRun, TaskRunState
from orchestration.services.task_runs import task_run_report_batch
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, TaskRunFactory

from .conftest import drive, history, refresh

SEQUENCE = [("load", "PENDING"), ("load", "RUNNING"), ("extract", "RUNNING"), ("load", "COMPLETED"),
            ("extract", "FAILED")]


@pytest.fixture
def version(flow_a):
    return FlowVersionFactory(
        flow=flow_a, workspace=flow_a.workspace, version=300_000,
        tasks=[{"key": "extract", "name": "extract", "tags": [], "retries": 0},
               {"key": "load", "name": "load", "tags": [], "retries": 0}],
    )


def running_run(version: Any) -> Any:
    run = FlowRunFactory(flow_version=version)
    drive(run, "RUNNING")
    return run


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, Any]]:
    captured: list[dict[str, Any]] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: captured.append({"groups": groups, **event}))
    return captured


def task_runs_of(run: Any) -> dict[str, TaskRun]:
    with rls_bypass():
        return {t.task_key: t for t in TaskRun.objects.for_workspace(run.workspace_id).filter(flow_run=run)}


def test_a_stale_version_gets_the_same_answer_from_a_batch_and_from_a_single_proposal(agent, version):
    run = running_run(version)
    task = TaskRunFactory(flow_run=run, task_key="load", map_index=-1)
    drive(task, "RUNNING")
    with workspace_scope([run.workspace_id]), pytest.raises(Conflict) as single:
        task_run_set_state(actor=agent, task_run_id=task.pk, workspace_id=run.workspace_id, expected_version=0,
                           state=ProposedState(type="COMPLETED"), policy=TaskPolicy())
    with pytest.raises(Conflict) as batch:
        task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
            {"task_key": "load", "map_index": -1, "state_type": "COMPLETED", "expected_version": 0}])

    assert single.value.code == batch.value.code == "stale_state_version"
    assert str(single.value) == str(batch.value)
    assert single.value.details == {"state_type": "RUNNING", "state_name": "Running", "state_version": 1}
    assert batch.value.details == {**single.value.details, "task_key": "load", "map_index": -1}
    refresh(task)
    assert (task.state_type, task.state_version, len(history(task))) == ("RUNNING", 1, 1)


def test_a_right_expected_version_is_accepted_in_a_batch_report_by_report(agent, version):
    run = running_run(version)
    results = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
        {"task_key": "load", "state_type": "RUNNING", "expected_version": 0},
        {"task_key": "load", "state_type": "COMPLETED", "expected_version": 1},
    ])
    assert [(r.status, r.state_version) for r in results] == [(SetStateStatus.ACCEPT, 1), (SetStateStatus.ACCEPT, 2)]


def test_a_batch_writes_the_history_rows_and_the_states_of_one_call_per_report(
    agent, version, sent, django_capture_on_commit_callbacks
):
    one_by_one, batched = running_run(version), running_run(version)
    tasks = {key: TaskRunFactory(flow_run=one_by_one, task_key=key, map_index=-1) for key in ("load", "extract")}
    with django_capture_on_commit_callbacks(execute=True), workspace_scope([one_by_one.workspace_id]):
        singles = [
            task_run_set_state(actor=agent, task_run_id=tasks[key].pk, workspace_id=one_by_one.workspace_id,
                               attempt=1, state=ProposedState(type=state), policy=TaskPolicy())
            for key, state in SEQUENCE
        ]
    single_events = [e for e in sent if e["type"] == "task_run.state_changed"]
    sent.clear()
    # the single path starts from existing task runs (SCHEDULED, version 0), the batch creates them
    with django_capture_on_commit_callbacks(execute=True):
        results = task_run_report_batch(actor=agent, flow_run_id=batched.pk, attempt=1, reports=[
            {"task_key": key, "state_type": state} for key, state in SEQUENCE])

    assert [(r.status, r.state_type, r.state_version) for r in results] == \
           [(r.status, r.state_type, r.state_version) for r in singles]
    by_key = task_runs_of(batched)
    for key, single in task_runs_of(one_by_one).items():
        got = by_key[key]
        assert (got.state_type, got.state_version, got.start_time is not None, got.end_time is not None) == \
               (single.state_type, single.state_version, single.start_time is not None, single.end_time is not None)
        assert [(h.type, h.name) for h in history(got)] == [(h.type, h.name) for h in history(single)]

    # one event per accepted report from single calls; one event listing each changed task run's
    # final state from the batch, to the same group (the flow run's)
    assert len(single_events) == len(SEQUENCE)
    (batch_event,) = [e for e in sent if e["type"] == "task_run.states_changed"]
    assert batch_event["groups"] == [f"run.{batched.pk}"]
    assert single_events[0]["groups"] == [f"run.{one_by_one.pk}"]
    last_single = {e["data"]["task_key"]: (e["data"]["state_type"], e["data"]["state_name"]) for e in single_events}
    assert {t["task_key"]: (t["state_type"], t["state_name"]) for t in batch_event["data"]["task_runs"]} == last_single
    assert {t["id"] for t in batch_event["data"]["task_runs"]} == {str(t.pk) for t in by_key.values()}


def test_the_engine_batch_entry_point_takes_typed_reports(agent, version):
    run = running_run(version)
    with workspace_scope([run.workspace_id]):
        results = task_run_set_states(actor=agent, workspace_id=run.workspace_id, flow_run_id=run.pk, attempt=1,
                                      reports=[TaskRunReport("load", 3, ProposedState(type="RUNNING"))])
    assert results[0].status is SetStateStatus.ACCEPT
    task = task_runs_of(run)["load"]
    assert (task.map_index, task.state_type, task.state_version) == (3, "RUNNING", 1)
    with rls_bypass():
        assert TaskRunState.objects.for_workspace(run.workspace_id).filter(task_run=task).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_task_run_a_concurrent_batch_creates_first_is_read_locked_and_reported_on(agent, version):
    """Two batches report a task run neither has seen. The second's insert waits on the first's
    uncommitted one, skips it once the first commits, and reads the row locked: one task run, both
    reports applied in turn (a batch reads back only the rows another created)."""
    run = running_run(version)
    inserted, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
                    {"task_key": "load", "state_type": "RUNNING"}])
                inserted.set()
                release.wait(30)
        finally:
            connection.close()

    def second() -> None:
        try:
            results["second"] = task_run_report_batch(actor=agent, flow_run_id=run.pk, attempt=1, reports=[
                {"task_key": "load", "state_type": "COMPLETED"}])
        finally:
            connection.close()

    holder = threading.Thread(target=first)
    holder.start()
    assert inserted.wait(30)
    waiter = threading.Thread(target=second)
    waiter.start()
    # the second batch is blocked on the first's uncommitted row before the first commits
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0] > 0:
                break
            assert time.monotonic() < deadline and waiter.is_alive(), "the second batch never waited"
            time.sleep(0.01)
    release.set()
    holder.join(30)
    waiter.join(30)

    assert [(r.status, r.state_type, r.state_version) for r in results["first"]] == \
        [(SetStateStatus.ACCEPT, "RUNNING", 1)]
    assert [(r.status, r.state_type, r.state_version) for r in results["second"]] == \
        [(SetStateStatus.ACCEPT, "COMPLETED", 2)]
    (task,) = task_runs_of(run).values()
    assert (task.task_key, task.state_type, task.state_version) == ("load", "COMPLETED", 2)
    assert [h.type for h in history(task)] == ["RUNNING", "COMPLETED"]
