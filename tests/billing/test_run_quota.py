"""The run quota (EnforceRunQuota): every way a run is created counts against the workspace's
billing period, and a creation past the plan's limit is refused with 402 and writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Role
from billing.models import RunMeter, SubscriptionStatus
from billing.quotas import open_meter
from core.tenancy import rls_bypass
from orchestration.models import FlowRun
from orchestration.services.scheduler import schedule_due_runs
from tests.billing.conftest import flow_of, set_free_runs, subscribe
from tests.orchestration.schedules.factories import ScheduleFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("billing_on")]


def runs_in(world) -> int:
    with rls_bypass():
        return FlowRun.objects.unscoped().filter(workspace=world.workspace).count()


def meter_of(world) -> RunMeter:
    with rls_bypass():
        return RunMeter.objects.unscoped().get(workspace=world.workspace, period_end__gt=timezone.now())


def create(world, flow, **body):
    return world.client(Role.DEVELOPER, key=True).post(
        world.url("flow-runs/"), {"flow": str(flow.pk), **body}, format="json")


def test_the_run_past_the_free_allowance_is_refused_with_402_and_nothing_written(world_a):
    # given: Free allows 3 runs a period
    set_free_runs(3)
    flow = flow_of(world_a)
    for _ in range(3):
        assert create(world_a, flow).status_code == 201
    # when
    response = create(world_a, flow)
    # then
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] | {"resets_at": None} == {
        "limit": "runs", "used": 3, "allowed": 3, "requested": 1, "plan": "free", "resets_at": None}
    assert "used 3 of the 3 flow runs its Free plan allows" in error["message"]
    assert "upgrading the plan" in error["message"]
    assert runs_in(world_a) == 3
    assert meter_of(world_a).runs == 3


def test_a_bulk_submit_that_does_not_fit_creates_none_of_its_runs(world_a):
    # given: 5 runs left
    set_free_runs(5)
    flow = flow_of(world_a)
    client = world_a.client(Role.DEVELOPER, key=True)
    # when: 6 asked, then 5
    too_many = client.post(world_a.url("flow-runs/bulk/"), {"flow": str(flow.pk), "runs": [{}] * 6}, format="json")
    fitting = client.post(world_a.url("flow-runs/bulk/"), {"flow": str(flow.pk), "runs": [{}] * 5}, format="json")
    # then
    assert too_many.status_code == 402
    assert too_many.json()["error"]["details"]["requested"] == 6
    assert "(5 left)" in too_many.json()["error"]["message"]
    assert fitting.status_code == 201, fitting.content
    assert runs_in(world_a) == 5


def test_a_repeated_idempotency_key_counts_once(world_a):
    # given
    set_free_runs(2)
    flow = flow_of(world_a)
    # when: the same create sent three times, then another run
    answers = [create(world_a, flow, idempotency_key="nightly-2026-12-03").status_code for _ in range(3)]
    other = create(world_a, flow)
    # then
    assert answers == [201, 200, 200] or answers == [201, 201, 201]
    assert other.status_code == 201
    assert meter_of(world_a).runs == 2 == runs_in(world_a)


def test_graphql_quick_run_says_quota_exceeded(world_a):
    # given
    set_free_runs(0)
    flow = flow_of(world_a)
    client = world_a.client(Role.DEVELOPER)
    # when
    response = client.post("/graphql", {
        "query": "mutation($w: String!, $f: ID!) { quickRun(workspace: $w, flowId: $f) { errors { code message } } }",
        "variables": {"w": world_a.workspace.slug, "f": str(flow.pk)},
    }, format="json")
    # then
    errors = response.json()["data"]["quickRun"]["errors"]
    assert [e["code"] for e in errors] == ["quota_exceeded"]
    assert "flow runs its Free plan allows" in errors[0]["message"]
    assert runs_in(world_a) == 0


def test_the_scheduler_creates_only_the_runs_that_fit_and_then_stops(world_a):
    # given: 4 runs left and a one-minute schedule that plans 10 runs ahead
    set_free_runs(4)
    now = timezone.now()
    ScheduleFactory(flow=flow_of(world_a), interval_seconds=60, created_at=now, updated_at=now)
    # when: two ticks
    first = schedule_due_runs(now=now)
    second = schedule_due_runs(now=now + dt.timedelta(minutes=1))
    # then: the four earliest runs, and the meter at its limit
    with rls_bypass():
        starts = sorted(FlowRun.objects.unscoped().filter(workspace=world_a.workspace)
                        .values_list("scheduled_start", flat=True))
    assert (first, second) == (4, 0)
    assert len(starts) == 4
    assert starts[0] <= now + dt.timedelta(minutes=1)
    assert all(later - earlier == dt.timedelta(minutes=1) for earlier, later in zip(starts, starts[1:]))
    assert meter_of(world_a).runs == 4


def test_without_billing_nothing_is_counted_or_refused(world_a, settings):
    # given: an installation without billing, and a Free allowance of 0 that must not matter
    settings.FLOWDECK_BILLING = False
    set_free_runs(0)
    flow = flow_of(world_a)
    # when
    statuses = [create(world_a, flow).status_code for _ in range(3)]
    # then
    assert statuses == [201] * 3
    with rls_bypass():
        assert not RunMeter.objects.unscoped().exists()


def test_standard_counts_runs_past_its_allowance_as_overage_instead_of_refusing(world_a):
    # given: Standard with an allowance of 2 runs for this workspace
    subscribe(world_a, "standard", seats=5, custom_runs_per_period=2)
    flow = flow_of(world_a)
    # when
    statuses = [create(world_a, flow).status_code for _ in range(4)]
    # then
    assert statuses == [201] * 4
    meter = meter_of(world_a)
    assert (meter.runs, meter.runs_limit, meter.overage_allowed) == (4, 2, True)


def test_a_lapsed_subscription_falls_back_to_free_limits_after_its_grace_period(world_a):
    # given: Standard, past due, grace over; Free allows 1 run
    set_free_runs(1)
    subscribe(world_a, "standard", seats=5, status=SubscriptionStatus.PAST_DUE,
              grace_ends_at=timezone.now() - dt.timedelta(minutes=1))
    flow = flow_of(world_a)
    # when
    statuses = [create(world_a, flow).status_code for _ in range(2)]
    # then
    assert statuses == [201, 402]


def test_past_due_within_grace_keeps_the_paid_limits(world_a):
    # given
    set_free_runs(0)
    subscribe(world_a, "standard", seats=5, status=SubscriptionStatus.PAST_DUE,
              grace_ends_at=timezone.now() + dt.timedelta(days=3))
    # when
    response = create(world_a, flow_of(world_a))
    # then
    assert response.status_code == 201


def test_a_new_month_opens_a_new_meter_and_runs_are_allowed_again(world_a):
    # given: Free's allowance used up in December
    set_free_runs(1)
    flow = flow_of(world_a)
    with time_machine.travel(dt.datetime(2026, 12, 20, 12, tzinfo=dt.UTC)):
        assert create(world_a, flow).status_code == 201
        refused = create(world_a, flow)
    # when: January
    with time_machine.travel(dt.datetime(2027, 1, 1, 0, 0, 1, tzinfo=dt.UTC)):
        january = create(world_a, flow)
    # then
    assert refused.status_code == 402
    assert refused.json()["error"]["details"]["resets_at"].startswith("2027-01-01T00:00:00")
    assert january.status_code == 201
    with rls_bypass():
        meters = list(RunMeter.objects.unscoped().filter(workspace=world_a.workspace)
                      .order_by("period_start").values_list("period_start", "runs"))
    assert meters == [(dt.datetime(2026, 12, 1, tzinfo=dt.UTC), 1), (dt.datetime(2027, 1, 1, tzinfo=dt.UTC), 1)]


def test_a_paid_period_that_starts_mid_month_ends_the_free_meter_there(world_a):
    # given: a Free meter for December with 1 run
    set_free_runs(5)
    flow = flow_of(world_a)
    with time_machine.travel(dt.datetime(2026, 12, 10, tzinfo=dt.UTC)):
        assert create(world_a, flow).status_code == 201
    # when: an upgrade whose period starts on the 15th
    start, end = dt.datetime(2026, 12, 15, tzinfo=dt.UTC), dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    with time_machine.travel(dt.datetime(2026, 12, 16, tzinfo=dt.UTC)):
        subscribe(world_a, "standard", seats=5, current_period_start=start, current_period_end=end)
        meter = open_meter(world_a.workspace.pk)
    # then: exactly one meter covers any moment
    with rls_bypass():
        meters = list(RunMeter.objects.unscoped().filter(workspace=world_a.workspace)
                      .order_by("period_start").values_list("period_start", "period_end"))
    assert meters == [(dt.datetime(2026, 12, 1, tzinfo=dt.UTC), start), (start, end)]
    assert (meter.runs, meter.runs_limit) == (0, 100_000)


def test_a_paid_plan_cancelled_within_the_month_it_began_goes_back_to_the_month_meter(world_a):
    # given: 2 Free runs on the 10th, Standard from the 15th (2 runs), cancelled on the 20th
    set_free_runs(3)
    flow = flow_of(world_a)
    with time_machine.travel(dt.datetime(2026, 12, 10, tzinfo=dt.UTC)):
        assert [create(world_a, flow).status_code for _ in range(2)] == [201, 201]
    start, end = dt.datetime(2026, 12, 15, tzinfo=dt.UTC), dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    with time_machine.travel(dt.datetime(2026, 12, 16, tzinfo=dt.UTC)):
        subscribe(world_a, "standard", seats=5, current_period_start=start, current_period_end=end)
        assert [create(world_a, flow).status_code for _ in range(2)] == [201, 201]
    # when: after the cancellation, Free's month meter again (2 of 3 used)
    with time_machine.travel(dt.datetime(2026, 12, 20, tzinfo=dt.UTC), tick=False):
        subscribe(world_a, "standard", seats=5, status=SubscriptionStatus.CANCELED)
        statuses = [create(world_a, flow).status_code for _ in range(2)]
    # then
    assert statuses == [201, 402]
    with rls_bypass():
        meters = list(RunMeter.objects.unscoped().filter(workspace=world_a.workspace)
                      .order_by("period_start").values_list("period_start", "period_end", "runs"))
    assert meters == [(dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC), 3),
                      (start, dt.datetime(2026, 12, 20, tzinfo=dt.UTC), 2)]
