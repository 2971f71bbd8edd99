"""The one run filter (REST, GraphQL and bulk actions use it): every field, alone and combined.
Labels are "carries all of these", matched exactly (case and all), on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import workspace_scope
from orchestration.models import FlowRun
from orchestration.selectors import FlowRunFilter, filter_runs, runs_visible_to
from tests.orchestration.test_run_filters import BASE, five_runs

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(world_a):  # type: ignore[no-untyped-def]
    flows = five_runs(world_a)
    return flows["nightly"], flows["hourly"]


def _names(world_a, f: FlowRunFilter) -> list[str]:  # type: ignore[no-untyped-def]
    principal = Principal(workspace=world_a.workspace, role=Role.VIEWER, user=world_a.users[Role.VIEWER])
    with workspace_scope([world_a.workspace.pk]):
        return sorted(run.name for run in filter_runs(runs_visible_to(principal), f, workspace=world_a.workspace))


CASES = [
    (FlowRunFilter(), ["r1", "r2", "r3", "r4", "r5"]),
    (FlowRunFilter(state_types=["FAILED", "RUNNING"]), ["r2", "r3"]),
    (FlowRunFilter(state_types=[]), ["r1", "r2", "r3", "r4", "r5"]),
    (FlowRunFilter(state_name="Late"), ["r4"]),
    (FlowRunFilter(labels=["etl"]), ["r1", "r2", "r4"]),
    (FlowRunFilter(labels=["etl", "gpu"]), ["r1", "r4"]),
    (FlowRunFilter(labels=["etl", "gpu", "big"]), ["r4"]),
    (FlowRunFilter(labels=["ETL"]), ["r5"]),
    (FlowRunFilter(labels=["etl-old"]), ["r5"]),
    (FlowRunFilter(labels=['say "etl"']), ["r5"]),
    (FlowRunFilter(labels=["et"]), []),
    (FlowRunFilter(labels=["gpu", "nope"]), []),
    (FlowRunFilter(scheduled_before=BASE), ["r1", "r2"]),
    (FlowRunFilter(scheduled_after=BASE), ["r3", "r4", "r5"]),
    (FlowRunFilter(scheduled_after=BASE - timedelta(hours=1), scheduled_before=BASE + timedelta(hours=1)),
     ["r2", "r3"]),
    (FlowRunFilter(created_by=FlowRun.CreatedBy.USER), ["r2", "r5"]),
    (FlowRunFilter(state_types=["SCHEDULED"], labels=["etl"], created_by="api"), ["r1", "r4"]),
    (FlowRunFilter(flow_id="not-a-uuid"), []),
    (FlowRunFilter(tags=["db"]), ["r1", "r2"]),
    (FlowRunFilter(tags=["db", "heavy"]), ["r1"]),
    (FlowRunFilter(tags=["HEAVY"]), ["r3"]),
    (FlowRunFilter(tags=["db"], state_types=["FAILED"]), ["r2"]),
    (FlowRunFilter(without_live_agent=True), ["r4"]),
]


@pytest.mark.parametrize(("f", "expected"), CASES)
def test_filter_runs(world_a, runs, f, expected):
    assert _names(world_a, f) == expected


def test_filter_runs_by_flow(world_a, runs):
    nightly, hourly = runs
    assert _names(world_a, FlowRunFilter(flow_id=nightly.pk)) == ["r1", "r2", "r3"]
    assert _names(world_a, FlowRunFilter(flow_id=str(hourly.pk), labels=["gpu"])) == ["r4"]
