"""The usage report (REST, CSV, GraphQL): every member sees it, no other workspace does, and log
retention follows the plan."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import LogEntry
from orchestration.services.logs import purge_expired_logs
from tests.billing.conftest import flow_of, set_free_runs, subscribe
from tests.orchestration.factories import FlowRunFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("billing_on")]


def create_runs(world, flow, n: int) -> None:
    client = world.client(Role.DEVELOPER, key=True)
    for _ in range(n):
        assert client.post(world.url("flow-runs/"), {"flow": str(flow.pk)}, format="json").status_code == 201


def test_a_viewer_sees_runs_seats_and_logs_against_the_plan(world_a):
    # given: 3 runs of one flow, 1 of another, on Free (100 runs)
    set_free_runs(100)
    nightly, hourly = flow_of(world_a), flow_of(world_a)
    create_runs(world_a, nightly, 3)
    create_runs(world_a, hourly, 1)
    # when
    response = world_a.client(Role.VIEWER).get(world_a.url("usage/"))
    # then
    assert response.status_code == 200
    usage = response.json()
    today = timezone.now().astimezone(dt.UTC).date().isoformat()
    assert usage | {"period_start": None, "period_end": None, "log_bytes": None} == {
        "billing_enabled": True, "plan": "free", "plan_name": "Free", "period_start": None, "period_end": None,
        "runs_used": 4, "runs_limit": 100, "overage_allowed": False, "seats_used": 4, "seats_limit": 3,
        "log_bytes": None, "log_retention_days": 7,
        "runs_by_day": [{"day": today, "runs": 4}],
        "runs_by_flow": [{"flow_id": str(nightly.pk), "flow_name": nightly.name, "runs": 3},
                         {"flow_id": str(hourly.pk), "flow_name": hourly.name, "runs": 1}],
    }
    assert usage["period_start"].startswith(timezone.now().strftime("%Y-%m-01T00:00:00"))


def test_the_csv_has_a_row_per_day_and_flow_and_the_totals(world_a):
    # given
    set_free_runs(100)
    flow = flow_of(world_a)
    create_runs(world_a, flow, 2)
    # when
    response = world_a.client(Role.VIEWER).get(world_a.url("usage/download/"))
    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith(f'attachment; filename="flowdeck-usage-{world_a.workspace.slug}-')
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["section", "key", "value", "limit"]
    assert ["runs_by_flow", flow.name, "2", ""] in rows
    assert ["total", "runs", "2", "100"] in rows
    assert ["total", "seats", "4", "3"] in rows


def test_another_workspace_cannot_read_the_usage(world_a, world_b):
    # when
    by_key = world_b.client(Role.OWNER, key=True).get(world_a.url("usage/"))
    by_session = world_b.client(Role.OWNER).get(world_a.url("usage/download/"))
    graphql = world_b.client(Role.OWNER).post("/graphql", {
        "query": "query($w: String!) { billing(workspace: $w) { usage { runsUsed } } }",
        "variables": {"w": world_a.workspace.slug}}, format="json")
    # then
    assert (by_key.status_code, by_session.status_code) == (404, 404)
    assert graphql.json() == {"data": {"billing": None}}


def test_agents_cannot_read_usage(world_a):
    # when
    response = world_a.client(Role.AGENT).get(world_a.url("usage/"))
    # then
    assert response.status_code == 403


def test_graphql_usage_matches_rest(world_a):
    # given
    set_free_runs(100)
    create_runs(world_a, flow_of(world_a), 2)
    # when
    response = world_a.client(Role.VIEWER).post("/graphql", {
        "query": "query($w: String!) { billing(workspace: $w) { usage { plan runsUsed runsLimit seatsUsed "
                 "runsByDay { runs } } } plans { code seats runsPerPeriod } }",
        "variables": {"w": world_a.workspace.slug}}, format="json")
    # then
    data = response.json()["data"]
    assert data["billing"]["usage"] == {"plan": "free", "runsUsed": 2, "runsLimit": 100, "seatsUsed": 4,
                                        "runsByDay": [{"runs": 2}]}
    assert [p["code"] for p in data["plans"]] == ["free", "standard", "enterprise"]


def test_logs_are_kept_as_long_as_each_workspace_plan_says(world_a, world_b):
    # given: A on Free (7 days), B on Standard (30 days), each with a log line 10 days old
    subscribe(world_b, "standard", seats=5)
    old = timezone.now() - dt.timedelta(days=10)
    for world in (world_a, world_b):
        run = FlowRunFactory(flow=flow_of(world), workspace=world.workspace)
        with rls_bypass():
            LogEntry.objects.unscoped().create(workspace=world.workspace, flow_run=run, sequence=1, level=20,
                                               timestamp=old, message="old", created_at=old)
    # when
    deleted = purge_expired_logs()
    # then
    with rls_bypass():
        left = set(LogEntry.objects.unscoped().values_list("workspace__slug", flat=True))
    assert deleted == 1
    assert left == {world_b.workspace.slug}
