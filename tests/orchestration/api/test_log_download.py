"""Downloading a run's logs as one file (``GET …/flow-runs/{id}/logs/download/``): every line,
across as many pages as the run has, as plain text or JSON lines, with the list's filters; 404 for
another workspace's run; refused to roles without log:read."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import LogEntry
from orchestration.services.logs import EXPORT_PAGE
from tests.orchestration.factories import FlowRunFactory, TaskRunFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory, LogEntryFactory

from .conftest import assert_error


@pytest.fixture
def run(world_a):  # type: ignore[no-untyped-def]
    version = DagFlowVersionFactory(flow__workspace=world_a.workspace, flow__project__workspace=world_a.workspace)
    return FlowRunFactory(flow_version=version, name="nightly 2026/03/01")


def _body(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:500]
    return b"".join(response.streaming_content).decode()


def test_text_download_has_every_line_across_pages(world_a, run):
    now = timezone.now()
    with rls_bypass():
        LogEntry.objects.unscoped().bulk_create([
            LogEntry(workspace=world_a.workspace, flow_run=run, sequence=n, level=20, timestamp=now, logger="etl",
                     message=f"line {n}", created_at=now)
            for n in range(1, EXPORT_PAGE * 2 + 6)
        ])
    response = world_a.client(Role.VIEWER).get(world_a.url(f"flow-runs/{run.pk}/logs/download/"))
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"] == f'attachment; filename="nightly-2026-03-01-{run.pk}.log"'
    lines = _body(response).splitlines()
    assert len(lines) == EXPORT_PAGE * 2 + 5
    assert lines[0].endswith("INFO     etl: line 1") and lines[-1].endswith(f"etl: line {EXPORT_PAGE * 2 + 5}")


def test_jsonl_download_names_the_task_and_honours_filters(world_a, run):
    extract = TaskRunFactory(flow_run=run, task_key="extract")
    mapped = TaskRunFactory(flow_run=run, task_key="load", map_index=2)
    LogEntryFactory(flow_run=run, task_run=extract, level=10, message="debug detail")
    LogEntryFactory(flow_run=run, task_run=extract, level=40, message="extract failed")
    LogEntryFactory(flow_run=run, task_run=mapped, level=30, message="slow child")
    client = world_a.client(Role.VIEWER)
    url = world_a.url(f"flow-runs/{run.pk}/logs/download/")

    rows = [json.loads(line) for line in _body(client.get(url, {"output": "jsonl", "level_gte": 30})).splitlines()]
    assert [(r["task"], r["level_name"], r["message"]) for r in rows] == [
        ("extract", "ERROR", "extract failed"), ("load[2]", "WARNING", "slow child")]
    only_extract = _body(client.get(url, {"task_run_id": str(extract.pk), "search": "DETAIL"}))
    assert only_extract.count("\n") == 1 and "[extract] flowdeck.flow_runner: debug detail" in only_extract


@pytest.mark.parametrize("query", [{"output": "pdf"}, {"level_gte": "loud"}, {"task_run_id": "nope"},
                                   {"search": "x" * 201}])
def test_bad_filters_are_a_400(world_a, run, query):
    response = world_a.client(Role.VIEWER).get(world_a.url(f"flow-runs/{run.pk}/logs/download/"), query)
    assert_error(response, 400)


def test_another_workspaces_run_is_404(world_a, world_b, run):
    LogEntryFactory(flow_run=run, message="secret")
    for role in (Role.OWNER, Role.VIEWER):
        for url in (f"/api/v1/workspaces/{world_a.workspace.slug}/flow-runs/{run.pk}/logs/download/",
                    world_b.url(f"flow-runs/{run.pk}/logs/download/")):
            response = world_b.client(role).get(url)
            assert response.status_code == 404, (url, response.status_code)
            assert b"secret" not in response.content
    response = world_b.client(Role.AGENT, key=True).get(world_b.url(f"flow-runs/{run.pk}/logs/download/"))
    assert response.status_code in (403, 404)
