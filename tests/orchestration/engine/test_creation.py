"""Runs are born in one place (engine/creation.py): SCHEDULED at version 1 with its history row,
announced once; conflicting rows are skipped when asked."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction

from core.tenancy import rls_bypass
from orchestration.engine import db_now, insert_scheduled_runs, new_scheduled_run
from orchestration.models import FlowRun, FlowRunState

from .conftest import history


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, Any]]:
    captured: list[dict[str, Any]] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: captured.append({"groups": groups, **event}))
    return captured


def test_a_new_run_is_scheduled_at_version_1_with_its_history_row_and_one_event(
    flow_a, version_a, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), rls_bypass():
        now = db_now()
        runs = [new_scheduled_run(flow=flow_a, flow_version=version_a, name=f"r{i}", now=now) for i in range(3)]
        inserted = insert_scheduled_runs(runs, now=now)
    assert inserted == runs
    with rls_bypass():
        stored = FlowRun.objects.for_workspace(flow_a.workspace_id).get(pk=runs[0].pk)
    assert (stored.state_type, stored.state_name, stored.state_version) == ("SCHEDULED", "Scheduled", 1)
    assert stored.scheduled_start == now and stored.labels == list(version_a.labels or [])
    (row,) = history(stored)
    assert (row.type, row.name, row.details) == ("SCHEDULED", "Scheduled",
                                                 {"scheduled_start": stored.scheduled_start.isoformat()})
    (event,) = [e for e in sent if e["type"] == "flow_run.created"]
    assert event["data"]["count"] == 3 and event["data"]["ids"] == [str(r.pk) for r in runs]


def test_conflicting_runs_are_skipped_when_asked_and_refused_otherwise(flow_a, version_a):
    with rls_bypass():
        now = db_now()
        first = new_scheduled_run(flow=flow_a, flow_version=version_a, name="a", now=now, idempotency_key="k")
        insert_scheduled_runs([first], now=now)
        again = new_scheduled_run(flow=flow_a, flow_version=version_a, name="b", now=now, idempotency_key="k")
        other = new_scheduled_run(flow=flow_a, flow_version=version_a, name="c", now=now)
        assert insert_scheduled_runs([again, other], now=now, ignore_conflicts=True) == [other]
        assert not FlowRunState.objects.for_workspace(flow_a.workspace_id).filter(flow_run_id=again.pk).exists()
        with pytest.raises(IntegrityError), transaction.atomic():
            insert_scheduled_runs([new_scheduled_run(flow=flow_a, flow_version=version_a, name="d", now=now,
                                                     idempotency_key="k")], now=now)
