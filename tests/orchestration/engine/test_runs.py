"""The run services: create (validation, idempotency, versions), bulk create, cancel, restart,
mark as, delete and bulk actions."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.authz import NotFound, PermissionDenied
from accounts.models import Role
from core.errors import Conflict, InvalidInput
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state
from orchestration.models import Flow, FlowRun, FlowRunState, TaskRun
from orchestration.services import runs
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, TaskRunFactory

from .conftest import claimed_run, drive, history, principal, refresh

PARAMS = [
    {"name": "day", "type": "str", "default": None, "required": True},
    {"name": "limit", "type": "int", "default": 10, "required": False},
    {"name": "ratio", "type": "float", "default": 0.5, "required": False},
    {"name": "dry", "type": "bool", "default": False, "required": False},
    {"name": "tables", "type": "list", "default": [], "required": False},
    {"name": "opts", "type": "dict", "default": {}, "required": False},
    {"name": "anything", "type": "any", "default": None, "required": False},
]


@pytest.fixture
def dev(world_a):
    return principal(world_a, Role.DEVELOPER)


@pytest.fixture
def typed_flow(flow_a):
    FlowVersionFactory(flow=flow_a, workspace=flow_a.workspace, version=100_050, parameters=PARAMS, labels=["prod"])
    return flow_a


def _runs(ws) -> list[FlowRun]:
    with rls_bypass():
        return list(FlowRun.objects.for_workspace(ws).order_by("created_at"))


# --- create ---------------------------------------------------------------------------------------


def test_a_created_run_is_scheduled_with_defaults_filled_and_one_history_row(dev, typed_flow):
    run, created = runs.flow_run_create(actor=dev, flow=typed_flow, parameters={"day": "2030-01-01", "ratio": 1})
    assert created
    refresh(run)
    assert run.parameters == {"day": "2030-01-01", "limit": 10, "ratio": 1, "dry": False, "tables": [], "opts": {},
                              "anything": None}
    assert (run.state_type, run.state_name, run.state_version, run.attempt) == ("SCHEDULED", "Scheduled", 1, 1)
    assert [h.type for h in history(run)] == ["SCHEDULED"]
    with rls_bypass():
        assert run.flow_version.version == 100_050
    assert run.labels == ["prod"] and run.created_by_user_id == dev.user.pk


@pytest.mark.parametrize(("parameters", "field", "message"), [
    ({}, "parameters.day", "required"),
    ({"day": "x", "nope": 1}, "parameters.nope", "Unknown parameter"),
    ({"day": 3}, "parameters.day", "type 'str'"),
    ({"day": "x", "limit": "10"}, "parameters.limit", "type 'int'"),
    ({"day": "x", "limit": True}, "parameters.limit", "type 'int'"),
    ({"day": "x", "ratio": "0.1"}, "parameters.ratio", "type 'float'"),
    ({"day": "x", "dry": 1}, "parameters.dry", "type 'bool'"),
    ({"day": "x", "tables": "a"}, "parameters.tables", "type 'list'"),
    ({"day": "x", "opts": []}, "parameters.opts", "type 'dict'"),
    ({"day": "x", "anything": {"deep": [1]}}, None, None),
])
def test_parameters_are_validated_against_the_versions_schema(dev, typed_flow, parameters, field, message):
    if field is None:
        assert runs.flow_run_create(actor=dev, flow=typed_flow, parameters=parameters)[1]
        return
    with pytest.raises(InvalidInput) as error:
        runs.flow_run_create(actor=dev, flow=typed_flow, parameters=parameters)
    assert error.value.code == "invalid_run"
    assert message in error.value.details[field][0]
    assert _runs(typed_flow.workspace_id) == []


def test_every_parameter_error_is_reported_at_once(dev, typed_flow):
    with pytest.raises(InvalidInput) as error:
        runs.flow_run_create(actor=dev, flow=typed_flow, parameters={"limit": "x", "zzz": 1})
    assert set(error.value.details) == {"parameters.day", "parameters.limit", "parameters.zzz"}


def test_parameters_over_512_kb_are_refused(dev, typed_flow):
    with pytest.raises(InvalidInput) as error:
        runs.flow_run_create(actor=dev, flow=typed_flow, parameters={"day": "x" * (512 * 1024)})
    assert "512 KB" in error.value.details["parameters"][0]


@pytest.mark.parametrize(("field", "value"), [("labels", "prod"), ("labels", [""]), ("name", ""),
                                              ("scheduled_start", "tomorrow"), ("scheduled_start", "2030-01-01T00:00")])
def test_bad_run_fields_are_refused(dev, typed_flow, field, value):
    with pytest.raises(InvalidInput) as error:
        runs.flow_run_create(actor=dev, flow=typed_flow, parameters={"day": "x"}, **{field: value})
    assert field in error.value.details


def test_a_known_idempotency_key_returns_the_same_run(dev, typed_flow):
    first, created = runs.flow_run_create(actor=dev, flow=typed_flow, parameters={"day": "x"}, idempotency_key="k1")
    again, created_again = runs.flow_run_create(actor=dev, flow=typed_flow, parameters={"day": "x"},
                                                idempotency_key="k1")
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert len(_runs(typed_flow.workspace_id)) == 1


def test_the_pinned_version_runs_and_archived_versions_do_not(dev, flow_a):
    old = FlowVersionFactory(flow=flow_a, workspace=flow_a.workspace, version=100_060)
    newest = FlowVersionFactory(flow=flow_a, workspace=flow_a.workspace, version=100_070, is_archived=True)
    assert runs.flow_run_create(actor=dev, flow=flow_a)[0].flow_version_id == old.pk
    with rls_bypass():
        Flow.objects.for_workspace(flow_a.workspace_id).filter(pk=flow_a.pk).update(pinned_version=newest)
        flow_a.refresh_from_db()
    assert runs.flow_run_create(actor=dev, flow=flow_a)[0].flow_version_id == newest.pk


def test_a_flow_without_an_active_version_cannot_run(dev, flow_a):
    with rls_bypass():
        flow_a.versions.update(is_archived=True)
    with pytest.raises(Conflict) as error:
        runs.flow_run_create(actor=dev, flow=flow_a)
    assert error.value.code == "no_active_version"


def test_a_viewer_cannot_create_and_another_workspace_cannot_see(world_a, world_b, flow_a):
    with pytest.raises(PermissionDenied):
        runs.flow_run_create(actor=principal(world_a, Role.VIEWER), flow=flow_a)
    with pytest.raises(NotFound):
        runs.flow_run_create(actor=principal(world_b, Role.OWNER), flow=flow_a)


def test_a_scheduled_start_and_creator_kind_are_kept(dev, flow_a):
    when = dt.datetime(2031, 5, 1, 8, 0, tzinfo=dt.UTC)
    run, _ = runs.flow_run_create(actor=dev, flow=flow_a, scheduled_start=when.isoformat(), name="by hand",
                                  created_by_kind="user")
    refresh(run)
    assert (run.scheduled_start, run.name, run.created_by_kind) == (when, "by hand", "user")


# --- bulk create -------------------------------------------------------------------------------------


def test_five_thousand_runs_are_created_in_one_call(dev, flow_a):
    created = runs.flow_run_bulk_create(actor=dev, flow=flow_a, runs=[{"name": f"r{i}"} for i in range(5000)])
    assert len(created) == 5000
    with rls_bypass():
        assert FlowRun.objects.for_workspace(flow_a.workspace_id).count() == 5000
        assert FlowRunState.objects.for_workspace(flow_a.workspace_id).count() == 5000


def test_more_than_five_thousand_runs_are_refused(dev, flow_a):
    with pytest.raises(InvalidInput) as error:
        runs.flow_run_bulk_create(actor=dev, flow=flow_a, runs=[{}] * 5001)
    assert error.value.code == "too_many_runs"


def test_one_bad_item_refuses_the_batch_with_its_index(dev, typed_flow):
    with pytest.raises(InvalidInput) as error:
        runs.flow_run_bulk_create(actor=dev, flow=typed_flow, runs=[{"parameters": {"day": "x"}}, {"parameters": {}}])
    assert list(error.value.details) == ["runs[1].parameters.day"]
    assert _runs(typed_flow.workspace_id) == []


def test_bulk_idempotency_keys_return_existing_runs(dev, flow_a):
    first, _ = runs.flow_run_create(actor=dev, flow=flow_a, idempotency_key="a")
    created = runs.flow_run_bulk_create(actor=dev, flow=flow_a, runs=[
        {"idempotency_key": "a"}, {"idempotency_key": "b"}, {"idempotency_key": "b"}, {}])
    assert created[0].pk == first.pk and created[1].pk == created[2].pk
    assert len(_runs(flow_a.workspace_id)) == 3


# --- cancel -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["PENDING", "RUNNING"])
def test_cancelling_a_held_run_asks_its_agent_to_stop(world_a, dev, version_a, agent_a, state):
    run = claimed_run(version_a, agent_a)
    if state == "RUNNING":
        drive(run, "RUNNING")
    result = runs.flow_run_cancel(actor=dev, flow_run=run)
    refresh(run)
    assert (result.status, run.state_type, run.cancellation_requested) == (SetStateStatus.ACCEPT, "CANCELLING", True)
    with workspace_scope([run.workspace_id]):  # the agent confirms; a late COMPLETED would be refused
        late = flow_run_set_state(actor=principal(world_a, Role.AGENT), flow_run_id=run.pk,
                                  workspace_id=run.workspace_id, state=ProposedState(type="COMPLETED"))
        confirmed = flow_run_set_state(actor=principal(world_a, Role.AGENT), flow_run_id=run.pk,
                                       workspace_id=run.workspace_id, state=ProposedState(type="CANCELLED"))
    assert (late.status, confirmed.status, confirmed.state_type) == ("REJECT", "ACCEPT", "CANCELLED")


@pytest.mark.parametrize("state", ["SCHEDULED", "PAUSED"])
def test_cancelling_a_run_no_agent_holds_is_immediate(dev, run_a, state):
    if state != "SCHEDULED":
        drive(run_a, state)
    runs.flow_run_cancel(actor=dev, flow_run=run_a)
    refresh(run_a)
    assert (run_a.state_type, run_a.cancellation_requested) == ("CANCELLED", True)
    assert run_a.end_time is not None


def test_cancelling_a_finished_run_is_a_conflict(dev, run_a):
    drive(run_a, "COMPLETED")
    with pytest.raises(Conflict) as error:
        runs.flow_run_cancel(actor=dev, flow_run=run_a)
    assert error.value.code == "run_finished"


def test_a_viewer_cannot_cancel(world_a, run_a):
    with pytest.raises(PermissionDenied):
        runs.flow_run_cancel(actor=principal(world_a, Role.VIEWER), flow_run=run_a)


# --- restart ---------------------------------------------------------------------------------------


def test_restart_reruns_failed_and_downstream_tasks_and_keeps_completed_upstream(dev, flow_a):
    version = FlowVersionFactory(
        flow=flow_a, workspace=flow_a.workspace, version=100_080,
        tasks=[{"key": k, "name": k, "tags": [], "retries": 0} for k in ("extract", "transform", "load", "report")],
        edges=[{"upstream": "extract", "downstream": "transform"}, {"upstream": "transform", "downstream": "load"},
               {"upstream": "extract", "downstream": "report"}],
    )
    run = FlowRunFactory(flow_version=version)
    tasks = {k: TaskRunFactory(flow_run=run, task_key=k) for k in ("extract", "transform", "load", "report")}
    endings = {"extract": "COMPLETED", "transform": "FAILED", "load": "COMPLETED", "report": "COMPLETED"}
    for key, state in endings.items():
        drive(tasks[key], state)
    drive(run, "FAILED")
    result = runs.flow_run_restart(actor=dev, flow_run=run)
    refresh(run)
    assert result.status is SetStateStatus.ACCEPT
    assert (run.state_type, run.state_name, run.attempt, run.end_time) == ("SCHEDULED", "AwaitingRetry", 2, None)
    with rls_bypass():
        states = dict(TaskRun.objects.for_workspace(run.workspace_id).filter(flow_run=run)
                      .values_list("task_key", "state_type"))
    assert states == {"extract": "COMPLETED", "transform": "PENDING", "load": "PENDING", "report": "COMPLETED"}


@pytest.mark.parametrize("state", ["SCHEDULED", "RUNNING", "COMPLETED"])
def test_only_failed_crashed_or_cancelled_runs_restart(dev, run_a, state):
    if state != "SCHEDULED":
        drive(run_a, state)
    with pytest.raises(Conflict) as error:
        runs.flow_run_restart(actor=dev, flow_run=run_a)
    assert error.value.code == "not_restartable"


# --- mark, delete ----------------------------------------------------------------------------------


def test_mark_as_sets_any_state_with_its_bookkeeping(dev, run_a):
    drive(run_a, "FAILED")
    result = runs.flow_run_mark(actor=dev, flow_run=run_a, state_type="COMPLETED", message="fixed by hand")
    refresh(run_a)
    assert (result.status, run_a.state_type, run_a.state_message) == ("ACCEPT", "COMPLETED", "fixed by hand")
    with pytest.raises(InvalidInput):
        runs.flow_run_mark(actor=dev, flow_run=run_a, state_type="DONE")


def test_delete_removes_the_run_and_its_rows(dev, run_a):
    TaskRunFactory(flow_run=run_a)
    runs.flow_run_delete(actor=dev, flow_run=run_a)
    assert _runs(run_a.workspace_id) == []
    with rls_bypass():
        assert TaskRun.objects.for_workspace(run_a.workspace_id).count() == 0


def test_another_workspace_cannot_delete(world_b, run_a):
    with pytest.raises(NotFound):
        runs.flow_run_delete(actor=principal(world_b, Role.OWNER), flow_run=run_a)


# --- bulk actions -------------------------------------------------------------------------------------


def test_bulk_cancel_cancels_the_filtered_unfinished_runs(dev, version_a, world_b):
    a, b, c = (FlowRunFactory(flow_version=version_a, labels=labels) for labels in (["x"], ["x", "y"], ["y"]))
    drive(c, "COMPLETED")
    FlowRunFactory(flow_version=FlowVersionFactory(flow__workspace=world_b.workspace, workspace=world_b.workspace))
    assert runs.flow_run_bulk_action(actor=dev, action="cancel", filters={"flow_id": str(version_a.flow_id)}) == 2
    for run in (a, b, c):
        refresh(run)
    assert [a.state_type, b.state_type, c.state_type] == ["CANCELLED", "CANCELLED", "COMPLETED"]


def test_bulk_clear_late_cancels_only_late_runs(dev, version_a):
    late, due = FlowRunFactory(flow_version=version_a), FlowRunFactory(flow_version=version_a)
    drive(late, "SCHEDULED", name="Late")
    assert runs.flow_run_bulk_action(actor=dev, action="clear_late", filters={}) == 1
    refresh(late)
    refresh(due)
    assert (late.state_type, due.state_type) == ("CANCELLED", "SCHEDULED")


def test_bulk_mark_uses_label_and_time_filters(dev, version_a):
    early = FlowRunFactory(flow_version=version_a, labels=["x"], scheduled_start=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    late = FlowRunFactory(flow_version=version_a, labels=["x"], scheduled_start=dt.datetime(2030, 6, 1, tzinfo=dt.UTC))
    other = FlowRunFactory(flow_version=version_a, labels=["z"], scheduled_start=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    changed = runs.flow_run_bulk_action(actor=dev, action="mark", state_type="FAILED", filters={
        "labels": ["x"], "scheduled_before": "2030-03-01T00:00:00Z", "state_types": ["SCHEDULED"]})
    assert changed == 1
    for run in (early, late, other):
        refresh(run)
    assert [early.state_type, late.state_type, other.state_type] == ["FAILED", "SCHEDULED", "SCHEDULED"]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"action": "explode", "filters": {}}, "action"),
    ({"action": "mark", "filters": {}}, "state_type"),
    ({"action": "cancel", "filters": {"colour": "red"}}, "filters.colour"),
    ({"action": "cancel", "filters": {"state_type": "DONE"}}, "filters.state_type"),
    ({"action": "cancel", "filters": {"flow_id": "nope"}}, "filters.flow_id"),
])
def test_bad_bulk_actions_are_refused(dev, kwargs, field):
    with pytest.raises(InvalidInput) as error:
        runs.flow_run_bulk_action(actor=dev, **kwargs)
    assert field in error.value.details
