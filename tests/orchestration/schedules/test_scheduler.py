"""The scheduler tick (schedule_due_runs): one platform job materialises every active schedule of every
workspace — 10 runs or 1 hour ahead, whichever first — idempotently, with no duplicates under
concurrent ticks (D7), within a bounded number of queries."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from core.tenancy import rls_bypass
from orchestration.models import Catchup, FlowRun, FlowRunState, Schedule, StateType
from orchestration.services.scheduler import MAX_BACKFILL_RUNS, schedule_due_runs
from tests.orchestration.factories import FlowFactory, FlowVersionFactory

from .factories import ScheduleFactory

# Half a minute past the hour: schedules created "now" have their first run at 12:01.
NOW = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
MINUTE = NOW.replace(second=0)


def _runs(**filters) -> list[FlowRun]:
    with rls_bypass():
        return list(FlowRun.objects.unscoped().filter(**filters).order_by("scheduled_start"))


def _version(workspace=None, **kwargs):
    flow_kwargs = {"flow__workspace": workspace, "flow__project__workspace": workspace} if workspace else {}
    return FlowVersionFactory(**flow_kwargs, **kwargs)


@pytest.mark.django_db
def test_one_minute_schedule_gets_ten_runs_ahead():
    # given a one-minute schedule
    schedule = ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW, updated_at=NOW)
    # when the scheduler ticks
    created = schedule_due_runs(now=NOW)
    # then the next ten runs exist (10 runs come before 1 hour)
    runs = _runs(schedule=schedule)
    assert created == 10
    assert [r.scheduled_start for r in runs] == [MINUTE + timedelta(minutes=i) for i in range(1, 11)]


@pytest.mark.django_db
def test_ten_minute_schedule_is_materialised_one_hour_ahead():
    schedule = ScheduleFactory(flow=_version().flow, interval_seconds=600, created_at=NOW, updated_at=NOW)
    assert schedule_due_runs(now=NOW) == 6
    assert _runs(schedule=schedule)[-1].scheduled_start == MINUTE + timedelta(hours=1)


@pytest.mark.django_db
def test_daily_schedule_has_no_run_until_within_the_hour():
    schedule = ScheduleFactory(flow=_version().flow, kind="cron", interval_seconds=None, cron="0 18 * * *",
                               created_at=NOW, updated_at=NOW)
    assert schedule_due_runs(now=NOW) == 0
    assert schedule_due_runs(now=NOW.replace(hour=17, minute=5)) == 1
    assert [r.scheduled_start for r in _runs(schedule=schedule)] == [MINUTE.replace(hour=18)]


@pytest.mark.django_db
def test_runs_carry_version_defaults_overlaid_with_schedule_parameters_labels_and_history():
    # given a version with parameter defaults and labels, and a schedule overriding one parameter
    version = _version(parameters=[{"name": "a", "type": "int", "default": 1, "required": False},
                                   {"name": "b", "type": "str", "default": "x", "required": False}],
                       labels=["gpu"])
    schedule = ScheduleFactory(flow=version.flow, interval_seconds=3600, parameters={"b": "y"},
                               created_at=NOW, updated_at=NOW)
    # when the tick creates its run
    schedule_due_runs(now=NOW)
    # then the run is SCHEDULED "Scheduled", created by the schedule, with merged parameters and a history row
    (run,) = _runs(schedule=schedule)
    assert (run.state_type, run.state_name, run.created_by_kind) == (StateType.SCHEDULED, "Scheduled", "schedule")
    assert run.parameters == {"a": 1, "b": "y"}
    assert run.labels == ["gpu"]
    assert run.flow_version_id == version.pk
    assert run.state_version == 1
    assert run.name == f"{version.flow.name}-20260601-130000"
    with rls_bypass():
        history = list(FlowRunState.objects.unscoped().filter(flow_run=run).values_list("type", "name"))
    assert history == [(StateType.SCHEDULED, "Scheduled")]


@pytest.mark.django_db
def test_created_runs_are_announced_once_per_flow_after_commit(world_a, django_capture_on_commit_callbacks,
                                                               monkeypatch):
    # given two flows of one workspace with schedules, and the channel layer's sender recorded
    sent: list[dict] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: sent.append({"groups": groups, **event}))
    flows = [_version(world_a.workspace).flow for _ in range(2)]
    for flow in flows:
        ScheduleFactory(flow=flow, interval_seconds=600, created_at=NOW, updated_at=NOW)
    # when the tick commits
    with django_capture_on_commit_callbacks(execute=True):
        schedule_due_runs(now=NOW)
    # then one flow_run.created event per flow went to the workspace's group
    created = [e for e in sent if e["type"] == "flow_run.created"]
    assert sorted(e["data"]["flow_id"] for e in created) == sorted(str(f.pk) for f in flows)
    assert all(e["data"]["count"] == 6 and len(e["data"]["ids"]) == 6 for e in created)
    assert all(e["groups"] == [f"ws.{world_a.workspace.pk}"] for e in created)


@pytest.mark.django_db
def test_the_pinned_version_is_used_over_the_newest():
    old = _version()
    FlowVersionFactory(flow=old.flow, workspace=old.workspace)
    with rls_bypass():
        type(old.flow).all_objects.filter(pk=old.flow_id).update(pinned_version=old)
    schedule = ScheduleFactory(flow=old.flow, interval_seconds=3600, created_at=NOW, updated_at=NOW)
    schedule_due_runs(now=NOW)
    assert {r.flow_version_id for r in _runs(schedule=schedule)} == {old.pk}


@pytest.mark.django_db
def test_a_second_tick_creates_nothing_new():
    schedule = ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW, updated_at=NOW)
    assert schedule_due_runs(now=NOW) == 10
    assert schedule_due_runs(now=NOW) == 0
    assert schedule_due_runs(now=NOW + timedelta(seconds=10)) == 0
    # a minute later one run became due and one more is planned
    assert schedule_due_runs(now=NOW + timedelta(minutes=1)) == 1
    assert len(_runs(schedule=schedule)) == 11


@pytest.mark.django_db
def test_a_deleted_run_is_not_recreated():
    schedule = ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW, updated_at=NOW)
    schedule_due_runs(now=NOW)
    first = _runs(schedule=schedule)[0]
    with rls_bypass():
        FlowRun.objects.unscoped().filter(pk=first.pk).delete()
    # the tick tops the horizon up at its far end, and never fills the hole
    assert schedule_due_runs(now=NOW) == 1
    assert _runs(schedule=schedule)[-1].scheduled_start == MINUTE + timedelta(minutes=11)
    assert first.scheduled_start not in {r.scheduled_start for r in _runs(schedule=schedule)}


@pytest.mark.django_db
def test_paused_schedules_archived_flows_and_flows_without_versions_get_no_runs():
    ScheduleFactory(flow=_version().flow, is_active=False)
    ScheduleFactory(flow=_version(flow__is_archived=True).flow)
    ScheduleFactory(flow=FlowFactory())
    assert schedule_due_runs(now=NOW) == 0


@pytest.mark.django_db
def test_end_date_stops_materialisation():
    schedule = ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW, updated_at=NOW,
                               end_date=NOW + timedelta(minutes=3))
    assert schedule_due_runs(now=NOW) == 3
    assert _runs(schedule=schedule)[-1].scheduled_start == MINUTE + timedelta(minutes=3)


@pytest.mark.django_db
def test_every_workspace_is_expanded_in_one_tick(world_a, world_b):
    in_a = ScheduleFactory(flow=_version(world_a.workspace).flow, interval_seconds=600, created_at=NOW, updated_at=NOW)
    in_b = ScheduleFactory(flow=_version(world_b.workspace).flow, interval_seconds=600, created_at=NOW, updated_at=NOW)
    assert schedule_due_runs(now=NOW) == 12
    assert {r.workspace_id for r in _runs(schedule=in_a)} == {world_a.workspace.pk}
    assert {r.workspace_id for r in _runs(schedule=in_b)} == {world_b.workspace.pk}


@pytest.mark.django_db
def test_dst_is_respected_when_materialising():
    # a cron at 02:30 Europe/Berlin does not fire on the spring-forward night
    schedule = ScheduleFactory(flow=_version().flow, kind="cron", interval_seconds=None, cron="30 2 * * *",
                               timezone="Europe/Berlin")
    schedule_due_runs(now=datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
    schedule_due_runs(now=datetime(2026, 3, 30, 0, 0, tzinfo=UTC))
    assert [r.scheduled_start for r in _runs(schedule=schedule)] == [datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]


# --- missed runs (the scheduler itself was down) ----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("catchup", "max_lateness", "expected_past"),
    [
        (Catchup.ALL, None, 60),  # the last hour, capped by MAX_BACKFILL
        (Catchup.ALL, 600, 10),  # no run later than max_lateness
        (Catchup.LATEST, None, 1),
        (Catchup.NONE, None, 1),  # only the run due within the grace
    ],
)
def test_missed_runs_are_backfilled_only_as_far_as_the_late_run_policy_allows(catchup, max_lateness, expected_past):
    flow = _version(flow__catchup=catchup, flow__max_lateness_seconds=max_lateness).flow
    schedule = ScheduleFactory(flow=flow, interval_seconds=60)
    schedule_due_runs(now=NOW)
    past = [r for r in _runs(schedule=schedule) if r.scheduled_start <= NOW]
    assert len(past) == expected_past
    assert past[-1].scheduled_start == MINUTE
    assert expected_past <= MAX_BACKFILL_RUNS


@pytest.mark.django_db
def test_a_new_schedule_does_not_backfill_before_its_creation():
    schedule = ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW - timedelta(seconds=90),
                               updated_at=NOW - timedelta(seconds=90))
    schedule_due_runs(now=NOW)
    assert _runs(schedule=schedule)[0].scheduled_start == MINUTE - timedelta(minutes=1)


# --- scale -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_many_schedules_cost_a_bounded_number_of_queries():
    # given 300 schedules over 30 flows
    versions = [_version() for _ in range(30)]
    for i in range(300):
        ScheduleFactory(flow=versions[i % 30].flow, interval_seconds=600, created_at=NOW, updated_at=NOW)
    # when one tick expands them, in batches of 100
    with CaptureQueriesContext(connection) as queries:
        created = schedule_due_runs(now=NOW, batch_size=100)
    # then 1,800 runs are created with a handful of queries per batch, not per schedule
    assert created == 1800
    assert len(queries) <= 4 * 15


# --- concurrency (D7) ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_ticks_never_duplicate_runs():
    # given 40 one-minute schedules
    schedules = [
        ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW, updated_at=NOW) for _ in range(40)
    ]
    barrier = threading.Barrier(6)
    results: list[int] = []
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results.append(schedule_due_runs(now=NOW, batch_size=7))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # when six ticks run at once on their own connections, three times each
    threads = [threading.Thread(target=tick) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every schedule has exactly its ten runs, each once, and the counts add up
    assert errors == []
    runs = _runs(schedule__in=schedules)
    keys = [(r.schedule_id, r.scheduled_start) for r in runs]
    assert len(keys) == len(set(keys)) == 400
    assert sum(results) == 400
    with rls_bypass():
        assert FlowRunState.objects.unscoped().filter(flow_run__in=runs).count() == 400


@pytest.mark.django_db(transaction=True)
def test_a_schedule_being_edited_is_left_to_the_next_tick():
    # given a schedule whose row another connection holds, as schedule_update does while it edits
    busy = ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW, updated_at=NOW)
    free = ScheduleFactory(flow=_version().flow, interval_seconds=60, created_at=NOW, updated_at=NOW)
    locked, release = threading.Event(), threading.Event()

    def edit() -> None:
        try:
            with transaction.atomic(), rls_bypass():
                Schedule.objects.unscoped().select_for_update().get(pk=busy.pk)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    editor = threading.Thread(target=edit)
    editor.start()
    assert locked.wait(30)
    try:
        # when the tick runs meanwhile
        created = schedule_due_runs(now=NOW)
    finally:
        release.set()
        editor.join()
    # then it expanded the free schedule only, without waiting; the next tick takes the other
    assert created == 10
    assert (len(_runs(schedule=busy)), len(_runs(schedule=free))) == (0, 10)
    assert schedule_due_runs(now=NOW) == 10
    assert len(_runs(schedule=busy)) == 10
