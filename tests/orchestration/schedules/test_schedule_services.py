"""Schedule services: create, update, pause/resume, delete — authorized with flow:register, validated,
and cleaning the schedule's future runs that no agent holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.authz import NotFound, PermissionDenied, Principal
from accounts.models import Role
from core.errors import InvalidInput
from core.tenancy import rls_bypass
from orchestration.models import FlowRun, FlowVersion, Schedule, StateType
from orchestration.services.scheduler import schedule_due_runs
from orchestration.services.schedules import schedule_create, schedule_delete, schedule_set_active, schedule_update
from tests.orchestration.factories import AgentFactory, FlowRunFactory, FlowVersionFactory

from .factories import ScheduleFactory

pytestmark = pytest.mark.django_db


def _runs(schedule: Schedule) -> list[FlowRun]:
    with rls_bypass():
        return list(FlowRun.objects.unscoped().filter(schedule_id=schedule.pk).order_by("scheduled_start"))


@time_machine.travel(datetime(2026, 5, 5, 12, 0, 30, tzinfo=UTC), tick=False)
def test_create_interval_schedule_anchors_on_the_current_minute(developer_a, flow_a):
    # when a developer creates an interval schedule without an anchor
    schedule = schedule_create(actor=developer_a, flow=flow_a, kind="interval", interval_seconds=300,
                               timezone="Europe/Berlin")
    # then it is stored, active, anchored at the current minute
    with rls_bypass():
        stored = Schedule.objects.unscoped().get(pk=schedule.pk)
    assert stored.is_active is True
    assert stored.anchor_date == datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    assert stored.timezone == "Europe/Berlin"
    assert stored.workspace_id == flow_a.workspace_id


def test_create_cron_schedule_with_parameters(developer_a, world_a):
    version = FlowVersionFactory(flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace,
                                 parameters=[{"name": "x", "type": "int", "default": 1, "required": False}])
    schedule = schedule_create(actor=developer_a, flow=version.flow, kind="cron", cron=" 0 9 * * 1-5 ",
                               timezone="America/New_York", parameters={"x": 5})
    assert (schedule.cron, schedule.parameters) == ("0 9 * * 1-5", {"x": 5})


def test_unknown_parameter_names_are_invalid_input(developer_a, world_a):
    version = FlowVersionFactory(flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace,
                                 parameters=[{"name": "x", "type": "int", "default": 1, "required": False}])
    with pytest.raises(InvalidInput) as error:
        schedule_create(actor=developer_a, flow=version.flow, kind="cron", cron="0 9 * * *", parameters={"y": 1})
    assert error.value.code == "unknown_parameters"
    assert "y" in error.value.details["parameters"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "cron", "cron": "not a cron"}, "cron"),
        ({"kind": "rrule", "rrule": "FREQ=NEVER"}, "rrule"),
        ({"kind": "interval", "interval_seconds": 1}, "interval_seconds"),
        ({"kind": "interval", "interval_seconds": 60, "timezone": "Nowhere/Town"}, "timezone"),
    ],
)
def test_bad_expressions_are_invalid_input(developer_a, flow_a, kwargs, field):
    with pytest.raises(InvalidInput) as error:
        schedule_create(actor=developer_a, flow=flow_a, **kwargs)
    assert field in error.value.details


def test_viewer_cannot_create_a_schedule(world_a, flow_a):
    viewer = Principal(workspace=world_a.workspace, role=Role.VIEWER, user=world_a.users[Role.VIEWER])
    with pytest.raises(PermissionDenied):
        schedule_create(actor=viewer, flow=flow_a, kind="cron", cron="0 9 * * *")


def test_another_workspaces_flow_is_not_found(world_b, flow_a):
    developer_b = Principal(workspace=world_b.workspace, role=Role.DEVELOPER, user=world_b.users[Role.DEVELOPER])
    schedule = ScheduleFactory(flow=flow_a)
    with pytest.raises(NotFound):
        schedule_create(actor=developer_b, flow=flow_a, kind="cron", cron="0 9 * * *")
    with pytest.raises(NotFound):
        schedule_set_active(actor=developer_b, schedule=schedule, is_active=False)


def _materialised(flow, clock):
    """A one-minute schedule with its runs ahead, one of them claimed, plus one past run."""
    now = clock()
    schedule = ScheduleFactory(flow=flow, interval_seconds=60, created_at=now, updated_at=now)
    schedule_due_runs(now=now)
    runs = _runs(schedule)
    claimed = runs[0]
    with rls_bypass():
        FlowRun.objects.unscoped().filter(pk=claimed.pk).update(agent=AgentFactory(workspace=flow.workspace))
        version = FlowVersion.objects.unscoped().get(pk=claimed.flow_version_id)
    past = FlowRunFactory(flow_version=version, flow=flow, workspace=flow.workspace, schedule=schedule,
                          scheduled_start=now - timedelta(minutes=5))
    return schedule, claimed, past, runs


def test_changing_a_schedule_deletes_its_unclaimed_future_runs(developer_a, flow_a, clock):
    # given a schedule with materialised runs, one claimed by an agent, and a past run
    schedule, claimed, past, runs = _materialised(flow_a, clock)
    assert len(runs) == 10
    # when its interval changes
    updated = schedule_update(actor=developer_a, schedule=schedule, interval_seconds=120)
    # then only the claimed and the past run remain, and the change is recorded
    assert {r.pk for r in _runs(schedule)} == {claimed.pk, past.pk}
    assert updated.interval_seconds == 120
    assert updated.updated_at > schedule.updated_at
    # and the next tick re-materialises on the new grid, never before the change
    schedule_due_runs()
    new_runs = [r for r in _runs(schedule) if r.pk not in {claimed.pk, past.pk}]
    assert new_runs
    assert all(r.scheduled_start >= updated.updated_at for r in new_runs)
    assert all(r.scheduled_start.minute % 2 == 0 for r in new_runs)


def test_pausing_deletes_unclaimed_future_runs_and_the_tick_creates_none(developer_a, flow_a, clock):
    schedule, claimed, past, _ = _materialised(flow_a, clock)
    paused = schedule_set_active(actor=developer_a, schedule=schedule, is_active=False)
    assert paused.is_active is False
    assert {r.pk for r in _runs(schedule)} == {claimed.pk, past.pk}
    assert schedule_due_runs() == 0
    # resuming brings runs back at the next tick
    schedule_set_active(actor=developer_a, schedule=schedule, is_active=True)
    assert schedule_due_runs() > 0


def test_an_update_that_changes_nothing_keeps_the_runs(developer_a, flow_a, clock):
    schedule, _, _, runs = _materialised(flow_a, clock)
    schedule_update(actor=developer_a, schedule=schedule, interval_seconds=60)
    assert len(_runs(schedule)) == len(runs) + 1


def test_unknown_fields_cannot_be_updated(developer_a, flow_a):
    schedule = ScheduleFactory(flow=flow_a)
    with pytest.raises(InvalidInput):
        schedule_update(actor=developer_a, schedule=schedule, workspace_id=1)


def test_update_validates_the_merged_schedule(developer_a, flow_a):
    schedule = ScheduleFactory(flow=flow_a)
    with pytest.raises(InvalidInput) as error:
        schedule_update(actor=developer_a, schedule=schedule, kind="cron")
    assert "cron" in error.value.details


def test_deleting_a_schedule_deletes_unclaimed_future_runs_and_keeps_the_rest(developer_a, flow_a, clock):
    schedule, claimed, past, _ = _materialised(flow_a, clock)
    schedule_delete(actor=developer_a, schedule=schedule)
    with rls_bypass():
        assert not Schedule.objects.unscoped().filter(pk=schedule.pk).exists()
        remaining = set(FlowRun.objects.unscoped().filter(flow=flow_a).values_list("pk", "schedule_id"))
        assert remaining == {(claimed.pk, None), (past.pk, None)}
        assert FlowRun.objects.unscoped().get(pk=past.pk).state_type == StateType.SCHEDULED


@pytest.mark.parametrize(
    ("parameters", "field"),
    [({"x": "not an int"}, "x"), ({}, "needed")],
)
def test_schedule_parameters_are_type_checked_and_required_ones_demanded(developer_a, world_a, parameters, field):
    version = FlowVersionFactory(
        flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace,
        parameters=[{"name": "x", "type": "int", "default": 1, "required": False},
                    {"name": "needed", "type": "str", "required": True}],
    )
    with pytest.raises(InvalidInput) as error:
        schedule_create(actor=developer_a, flow=version.flow, kind="cron", cron="0 9 * * *",
                        parameters={"needed": "yes", **parameters} if field == "x" else parameters)
    assert error.value.code == "invalid_parameters"
    assert field in error.value.details["parameters"]
