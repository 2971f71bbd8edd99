"""A schedule in registered metadata becomes the flow's schedule; a new version with another
schedule replaces it (API-made schedules stay); a bad one fails the whole registration."""

from __future__ import annotations

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowVersion, Schedule
from tests.orchestration.api.conftest import assert_error, register

pytestmark = pytest.mark.django_db


def _schedules(flow_id):
    with rls_bypass():
        return sorted(
            (s.kind, s.cron or str(s.interval_seconds), s.timezone, s.from_registration)
            for s in Schedule.all_objects.filter(flow_id=flow_id)
        )


def test_registered_schedule_is_created_and_replaced_by_the_next_version(world_a, metadata):
    client = world_a.client(Role.DEVELOPER)
    metadata["schedule"] = {"clocks": [{"kind": "cron", "cron": "0 9 * * *", "timezone": "Europe/Berlin"}]}
    first = register(client, world_a, metadata)
    assert first.status_code == 201, first.content
    flow_id = first.json()["flow"]["id"]
    assert _schedules(flow_id) == [("cron", "0 9 * * *", "Europe/Berlin", True)]
    manual = client.post(world_a.url(f"flows/{flow_id}/schedules/"), {"kind": "interval", "interval_seconds": 3600},
                         format="json")
    assert manual.status_code == 201, manual.content
    metadata["schedule"] = {"kind": "interval", "interval_seconds": 600}
    assert register(client, world_a, metadata).status_code == 201
    assert _schedules(flow_id) == [("interval", "3600", "UTC", False), ("interval", "600", "UTC", True)]


def test_re_registering_unchanged_metadata_leaves_schedules_alone(world_a, metadata):
    client = world_a.client(Role.DEVELOPER)
    metadata["schedule"] = {"kind": "cron", "cron": "*/5 * * * *"}
    flow_id = register(client, world_a, metadata).json()["flow"]["id"]
    with rls_bypass():
        before = list(Schedule.all_objects.filter(flow_id=flow_id).values_list("pk", flat=True))
    assert register(client, world_a, metadata).status_code == 200
    with rls_bypass():
        assert list(Schedule.all_objects.filter(flow_id=flow_id).values_list("pk", flat=True)) == before


@pytest.mark.parametrize(
    "schedule",
    [{"kind": "cron", "cron": "not a cron"}, {"kind": "weekly"}, {"clocks": "daily"},
     {"clocks": [{"kind": "cron", "cron": "* * * * *", "secret": 1}]},
     {"kind": "interval", "interval_seconds": 60, "start_date": "tomorrow"}],
)
def test_bad_registered_schedule_fails_the_registration_and_writes_nothing(world_a, metadata, schedule):
    metadata["schedule"] = schedule
    response = register(world_a.client(Role.DEVELOPER), world_a, metadata)
    assert_error(response, 400)
    with rls_bypass():
        assert not FlowVersion.all_objects.filter(workspace=world_a.workspace).exists()
        assert not Schedule.all_objects.filter(workspace=world_a.workspace).exists()
