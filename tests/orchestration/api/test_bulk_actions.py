"""Bulk actions over REST and GraphQL: a small selection is done within the request (200 with the
finished record), a large one runs in the background (202) and is followed at
``bulk-actions/{id}/`` or the GraphQL ``bulkAction`` field; another workspace's bulk action is a
404 / null like every other object (C1)."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import BulkAction, FlowRun
from orchestration.services import bulk_actions
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.api.conftest import assert_error, register


@pytest.fixture
def flow(world_a, metadata):
    return register(world_a.client(Role.DEVELOPER), world_a, metadata).json()["flow"]


def _create_runs(world, flow, count: int) -> None:
    created = world.client(Role.DEVELOPER).post(
        world.url("flow-runs/bulk/"), {"flow": flow["id"], "runs": [{} for _ in range(count)]}, format="json"
    )
    assert created.status_code == 201, created.content


def _cancel(world, flow):  # type: ignore[no-untyped-def]
    return world.client(Role.DEVELOPER).post(
        world.url("flow-runs/bulk-action/"),
        {"action": "cancel", "filters": {"flow": flow["id"], "state_type": ["SCHEDULED"]}}, format="json",
    )


@pytest.mark.django_db
def test_a_small_bulk_cancel_answers_the_finished_record(world_a, flow):
    # given
    _create_runs(world_a, flow, 3)
    # when
    response = _cancel(world_a, flow)
    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in ("action", "status", "matched", "done", "skipped", "failed", "count")} == {
        "action": "cancel", "status": "finished", "matched": 3, "done": 3, "skipped": 0, "failed": 0, "count": 3,
    }
    followed = world_a.client(Role.VIEWER).get(world_a.url(f"bulk-actions/{body['id']}/"))
    assert followed.status_code == 200 and followed.json()["done"] == 3


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_TASK_ALWAYS_EAGER=True)  # embedded mode: the action runs on a thread of its own
def test_a_large_bulk_cancel_runs_in_the_background_and_reports_progress(world_a, flow, monkeypatch):
    # given: more runs than a request handles itself
    monkeypatch.setattr(bulk_actions, "SYNC_MAX", 10)
    monkeypatch.setattr(bulk_actions, "BATCH_SIZE", 20)
    _create_runs(world_a, flow, 60)
    # when
    response = _cancel(world_a, flow)
    # then: accepted at once, and followed to the end
    assert response.status_code == 202, response.content
    assert response.json()["matched"] == 60
    url = world_a.url(f"bulk-actions/{response.json()['id']}/")
    deadline = time.monotonic() + 30
    while (body := world_a.client(Role.DEVELOPER).get(url).json())["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert {k: body[k] for k in ("status", "matched", "done", "skipped", "failed")} == {
        "status": "finished", "matched": 60, "done": 60, "skipped": 0, "failed": 0,
    }
    with rls_bypass():
        assert set(FlowRun.all_objects.filter(flow_id=flow["id"]).values_list("state_type", flat=True)) == {"CANCELLED"}


@pytest.mark.django_db
def test_another_workspaces_bulk_action_is_not_found(world_a, world_b):
    # given: a bulk action of workspace A
    with rls_bypass():
        bulk = BulkAction.all_objects.create(workspace=world_a.workspace, action="cancel", actor_role=Role.OWNER,
                                             status=BulkAction.Status.FINISHED, matched=4, done=4)
    # when / then: B's owner asks for it in B's workspace and in A's: 404 both times, nothing leaked
    for url in (world_b.url(f"bulk-actions/{bulk.pk}/"), world_a.url(f"bulk-actions/{bulk.pk}/")):
        error = assert_error(world_b.client(Role.OWNER).get(url), 404, "not_found")
        assert str(bulk.pk) not in str(error)
    # and over GraphQL it is null for B, visible for A
    query = "query($ws: String!, $id: ID!) { orchestration(workspace: $ws) { bulkAction(id: $id) { done status } } }"
    as_b = ok(gql(login(world_b.users[Role.OWNER]), query, {"ws": world_b.workspace.slug, "id": str(bulk.pk)}))
    assert as_b["orchestration"]["bulkAction"] is None
    as_a = ok(gql(login(world_a.users[Role.VIEWER]), query, {"ws": world_a.workspace.slug, "id": str(bulk.pk)}))
    assert as_a["orchestration"]["bulkAction"] == {"done": 4, "status": "finished"}


@pytest.mark.django_db
def test_a_malformed_bulk_action_id_over_graphql_is_null(world_a):
    query = "query($ws: String!, $id: ID!) { orchestration(workspace: $ws) { bulkAction(id: $id) { done } } }"
    data = ok(gql(login(world_a.users[Role.VIEWER]), query, {"ws": world_a.workspace.slug, "id": "nope"}))
    assert data["orchestration"]["bulkAction"] is None
