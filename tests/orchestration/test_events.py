"""orchestration.events: one payload builder per event type. Each sends its fields to the right group
(the workspace's, or only the run's for what happens inside a run), and ``flow_run.created`` has one
shape whether a run was created alone, in bulk or by the scheduler."""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration import events
from orchestration.models import BulkAction, ConcurrencyLimit, FlowRun, TaskRun
from orchestration.services import runs as run_services
from orchestration.services.scheduler import schedule_due_runs
from tests.orchestration.factories import (
    AgentFactory,
    FlowRunFactory,
    FlowVersionFactory,
    ProjectFactory,
    TaskRunFactory,
)
from tests.orchestration.schedules.factories import ScheduleFactory

NOW = dt.datetime(2026, 6, 1, 12, 0, 30, tzinfo=dt.UTC)


@pytest.fixture
def sent(monkeypatch, django_capture_on_commit_callbacks) -> list[dict[str, Any]]:
    """What is sent once the test's changes commit: ``{"groups", "type", "workspace_id", "data", "at"}``."""
    captured: list[dict[str, Any]] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: captured.append({"groups": groups, **event}))
    return captured


def _publish(commit: Any, call: Callable[[], None]) -> None:
    with commit(execute=True), rls_bypass():
        call()


def _only(sent: list[dict[str, Any]], type: str) -> dict[str, Any]:
    (event,) = [e for e in sent if e["type"] == type]
    return event


def _version_of(flow: Any) -> Any:
    with rls_bypass():
        return flow.versions.get()


def ws(obj: Any) -> list[str]:
    return [f"ws.{obj.workspace_id}"]


def run_group(flow_run_id: Any) -> list[str]:
    return [f"run.{flow_run_id}"]


# --- each builder: its fields and its group ---------------------------------------------------------


def test_project_events(world_a, sent, django_capture_on_commit_callbacks):
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    pk = str(project.pk)
    _publish(django_capture_on_commit_callbacks, lambda: (events.project_created(project),
                                                          events.project_updated(project),
                                                          events.project_deleted(project)))
    assert [(e["type"], e["data"], e["groups"]) for e in sent] == [
        ("project.created", {"id": pk, "name": "etl"}, ws(project)),
        ("project.updated", {"id": pk}, ws(project)),
        ("project.deleted", {"id": pk}, ws(project)),
    ]
    assert all(e["workspace_id"] == str(world_a.workspace.pk) for e in sent)


def test_a_deletion_must_be_announced_before_the_row_is_deleted(world_a):
    project = ProjectFactory(workspace=world_a.workspace)
    with rls_bypass():
        project.delete()
    with pytest.raises(ValueError, match="before calling delete"):
        events.project_deleted(project)


def test_flow_and_version_events(world_a, sent, django_capture_on_commit_callbacks):
    version = FlowVersionFactory(flow__project__workspace=world_a.workspace, flow__workspace=world_a.workspace,
                                 flow__project__name="etl", flow__name="nightly", version=3)
    flow = version.flow
    ids = {"flow_id": str(flow.pk), "flow_version_id": str(version.pk)}

    def announce() -> None:
        events.flow_registered(version)
        events.flow_updated(flow)
        flow.pinned_version = version
        events.flow_updated(flow, pin_changed=True)
        flow.pinned_version = None
        events.flow_updated(flow, pin_changed=True)
        events.flow_version_archived(version)
        events.flow_version_restored(version)
        events.flow_deleted(flow)

    _publish(django_capture_on_commit_callbacks, announce)
    assert [(e["type"], e["data"]) for e in sent] == [
        ("flow.registered", {**ids, "version": 3, "name": "nightly", "project": "etl"}),
        ("flow.updated", {"id": str(flow.pk)}),
        ("flow.updated", {"id": str(flow.pk), "pinned_version_id": str(version.pk)}),
        ("flow.updated", {"id": str(flow.pk), "pinned_version_id": None}),
        ("flow.version_archived", ids),
        ("flow.version_restored", ids),
        ("flow.deleted", {"id": str(flow.pk)}),
    ]
    assert all(e["groups"] == ws(flow) for e in sent)


def test_schedule_events(world_a, sent, django_capture_on_commit_callbacks):
    schedule = ScheduleFactory(flow__project__workspace=world_a.workspace, flow__workspace=world_a.workspace)
    data = {"id": str(schedule.pk), "flow_id": str(schedule.flow_id), "is_active": True}
    _publish(django_capture_on_commit_callbacks, lambda: (events.schedule_created(schedule),
                                                          events.schedule_updated(schedule),
                                                          events.schedule_deleted(schedule)))
    assert [(e["type"], e["data"], e["groups"]) for e in sent] == [
        ("schedule.created", data, ws(schedule)),
        ("schedule.updated", data, ws(schedule)),
        ("schedule.deleted", data, ws(schedule)),
    ]


def test_flow_run_events(flow_a, sent, django_capture_on_commit_callbacks):
    run = FlowRunFactory(flow_version=_version_of(flow_a), state_type="RUNNING", state_name="Running",
                         state_version=4)
    schedule = ScheduleFactory(flow=flow_a)
    _publish(django_capture_on_commit_callbacks, lambda: (events.flow_run_state_changed(run),
                                                          events.flow_run_deleted(run),
                                                          events.flow_run_deleted_by_schedule(schedule, [run.pk])))
    assert [(e["type"], e["data"], e["groups"]) for e in sent] == [
        ("flow_run.state_changed",
         {"id": str(run.pk), "state_type": "RUNNING", "state_name": "Running", "state_version": 4}, ws(run)),
        ("flow_run.deleted", {"id": str(run.pk)}, ws(run)),
        ("flow_run.deleted",
         {"ids": [str(run.pk)], "reason": "schedule_changed", "schedule_id": str(schedule.pk)}, ws(run)),
    ]


def test_events_inside_a_run_go_to_the_runs_group_only(flow_a, sent, django_capture_on_commit_callbacks):
    flow_run = FlowRunFactory(flow_version=_version_of(flow_a))
    task = TaskRunFactory(flow_run=flow_run, task_key="extract", map_index=2, state_type="COMPLETED",
                          state_name="Completed")
    # the engine's close of a finished run passes unsaved task runs: only these attributes are read
    closed = TaskRun(pk=task.pk, task_key="extract", map_index=2, state_type="CANCELLED", state_name="Cancelled")
    summary = {"id": str(task.pk), "task_key": "extract", "map_index": 2}

    _publish(django_capture_on_commit_callbacks, lambda: (
        events.task_run_state_changed(task),
        events.task_run_states_changed(flow_run.workspace_id, flow_run.pk, [task, closed]),
        events.logs_appended(flow_run, count=3, first_sequence=7, last_sequence=9),
    ))
    assert [(e["type"], e["data"]) for e in sent] == [
        ("task_run.state_changed",
         {"flow_run_id": str(flow_run.pk), **summary, "state_type": "COMPLETED", "state_name": "Completed"}),
        ("task_run.states_changed", {"flow_run_id": str(flow_run.pk), "task_runs": [
            {**summary, "state_type": "COMPLETED", "state_name": "Completed"},
            {**summary, "state_type": "CANCELLED", "state_name": "Cancelled"},
        ]}),
        ("logs.appended", {"flow_run_id": str(flow_run.pk), "count": 3, "first_sequence": 7, "last_sequence": 9}),
    ]
    assert all(e["groups"] == run_group(flow_run.pk) for e in sent)
    assert all(e["workspace_id"] == str(flow_run.workspace_id) for e in sent)  # numbered in the workspace


def test_task_run_states_changed_lists_at_most_500(flow_a, sent, django_capture_on_commit_callbacks):
    flow_run = FlowRunFactory(flow_version=_version_of(flow_a))
    many = [TaskRun(pk=i, task_key=f"t{i}", map_index=-1, state_type="COMPLETED", state_name="Completed")
            for i in range(events.TASK_RUNS_LISTED + 1)]
    _publish(django_capture_on_commit_callbacks,
             lambda: events.task_run_states_changed(flow_run.workspace_id, flow_run.pk, many))
    assert len(_only(sent, "task_run.states_changed")["data"]["task_runs"]) == events.TASK_RUNS_LISTED


def test_agent_limit_and_bulk_action_events(world_a, sent, django_capture_on_commit_callbacks):
    agent = AgentFactory(workspace=world_a.workspace, name="a1", labels=["gpu"], version="1.2")
    with rls_bypass():
        limit = ConcurrencyLimit.objects.unscoped().create(workspace=world_a.workspace, tag="db", limit=3)
        bulk = BulkAction.objects.unscoped().create(workspace=world_a.workspace, action="cancel", matched=5, done=2,
                                                    skipped=1, failed=0, status=BulkAction.Status.RUNNING,
                                                    actor_role=Role.ADMIN)
    _publish(django_capture_on_commit_callbacks, lambda: (
        events.agent_registered(agent, created=True),
        events.agent_status_changed(agent, previous="offline", status="healthy"),
        events.concurrency_limit_updated(limit),
        events.concurrency_limit_deleted(limit),
        events.bulk_action_progress(bulk),
    ))
    assert [(e["type"], e["data"]) for e in sent] == [
        ("agent.registered", {"id": str(agent.pk), "name": "a1", "type": agent.type, "labels": ["gpu"],
                              "version": "1.2", "created": True}),
        ("agent.status_changed", {"id": str(agent.pk), "name": "a1", "previous": "offline", "status": "healthy"}),
        ("concurrency_limit.updated", {"tag": "db", "limit": 3}),
        ("concurrency_limit.deleted", {"tag": "db"}),
        ("bulk_action.progress", {"id": str(bulk.pk), "action": "cancel", "status": "running", "matched": 5,
                                  "done": 2, "skipped": 1, "failed": 0}),
    ]
    assert all(e["groups"] == [f"ws.{world_a.workspace.pk}"] for e in sent)


# --- flow_run.created: one shape --------------------------------------------------------------------


CREATED_KEYS = {"flow_id", "created_by_kind", "count", "id", "ids", "runs"}
RUN_KEYS = {"id", "flow_id", "name", "state_type", "scheduled_start", "parent_flow_run_id"}


def _assert_created_shape(event: dict[str, Any], runs: list[FlowRun]) -> None:
    data = event["data"]
    assert set(data) == CREATED_KEYS
    assert event["groups"] == ws(runs[0])
    assert data["count"] == len(runs)
    assert data["ids"] == [str(r.pk) for r in runs][: events.CREATED_RUNS_LISTED]
    assert data["id"] == data["ids"][0]
    assert [set(r) for r in data["runs"]] == [RUN_KEYS] * len(data["ids"])
    assert [r["id"] for r in data["runs"]] == data["ids"]
    assert {r["flow_id"] for r in data["runs"]} == {data["flow_id"]}
    assert {r["state_type"] for r in data["runs"]} == {"SCHEDULED"}


def test_flow_run_created_groups_runs_by_flow_and_caps_the_lists(world_a, sent, django_capture_on_commit_callbacks):
    one, other = (FlowVersionFactory(flow__project__workspace=world_a.workspace, flow__workspace=world_a.workspace)
                  for _ in range(2))
    many = [FlowRunFactory(flow_version=one, state_type="SCHEDULED") for _ in range(events.CREATED_RUNS_LISTED + 2)]
    single = FlowRunFactory(flow_version=other, state_type="SCHEDULED", created_by_kind=FlowRun.CreatedBy.USER)
    _publish(django_capture_on_commit_callbacks, lambda: events.flow_run_created([*many, single]))
    first, second = sent
    _assert_created_shape(first, many)
    assert (first["data"]["flow_id"], first["data"]["created_by_kind"]) == (str(one.flow_id), "api")
    _assert_created_shape(second, [single])
    assert second["data"]["runs"][0] == {
        "id": str(single.pk), "flow_id": str(other.flow_id), "name": single.name, "state_type": "SCHEDULED",
        "scheduled_start": single.scheduled_start.isoformat(), "parent_flow_run_id": None,
    }
    assert second["data"]["created_by_kind"] == "user"


def test_flow_run_created_for_nothing_sends_nothing(db, sent, django_capture_on_commit_callbacks):
    _publish(django_capture_on_commit_callbacks, lambda: events.flow_run_created([]))
    assert sent == []


def _stored(ids: list[str]) -> list[FlowRun]:
    with rls_bypass():
        by_id = {str(r.pk): r for r in FlowRun.objects.unscoped().filter(pk__in=ids)}
    return [by_id[i] for i in ids]


def test_single_create_bulk_create_and_the_scheduler_announce_runs_alike(
    world_a, flow_a, sent, django_capture_on_commit_callbacks
):
    dev = Principal(workspace=world_a.workspace, role=Role.DEVELOPER, user=world_a.users[Role.DEVELOPER])
    # a run created alone, runs created in bulk, and runs the scheduler materialises
    with django_capture_on_commit_callbacks(execute=True):
        single, _ = run_services.flow_run_create(actor=dev, flow=flow_a)
    with django_capture_on_commit_callbacks(execute=True):
        bulk = run_services.flow_run_bulk_create(actor=dev, flow=flow_a, runs=[{"name": "a"}, {"name": "b"}])
    ScheduleFactory(flow=flow_a, interval_seconds=600, created_at=NOW, updated_at=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        assert schedule_due_runs(now=NOW) == 6
    created = [e for e in sent if e["type"] == "flow_run.created"]
    assert len(created) == 3
    # then each is one flow_run.created of the same shape, naming who created the runs
    _assert_created_shape(created[0], [single])
    _assert_created_shape(created[1], bulk)
    _assert_created_shape(created[2], _stored(created[2]["data"]["ids"]))
    assert [e["data"]["count"] for e in created] == [1, 2, 6]
    assert [e["data"]["created_by_kind"] for e in created] == [single.created_by_kind, "api", "schedule"]


# --- one place ------------------------------------------------------------------------------------


def test_orchestration_publishes_only_through_its_event_builders():
    """Only orchestration/events.py calls core.events.publish: every producer goes through it."""
    root = Path(__file__).resolve().parents[2] / "orchestration"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "events.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and node.module == "core.events"
                    and any(alias.name == "publish" for alias in node.names)):
                offenders.append(str(path.relative_to(root.parent)))
    assert offenders == []
