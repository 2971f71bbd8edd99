"""Deleting a workspace: Owners only, confirmed by typing its slug, everything in it goes, and the
deletion is written to the server's audit logger (the workspace's own audit log goes with it)."""

from __future__ import annotations

import logging

import pytest
from django.apps import apps

from accounts.models import Membership, Role, Workspace
from core.tenancy import TenantModel, rls_bypass
from tests.orchestration.graphql.factories import (
    DagFlowVersionFactory,
    FlowRunStateFactory,
    LogEntryFactory,
    ScheduleFactory,
    TaskRunStateFactory,
)

DELETE_WORKSPACE = """
mutation($workspace: String!, $confirmSlug: String!) {
  deleteWorkspace(workspace: $workspace, confirmSlug: $confirmSlug) { ok errors { code message field } }
}
"""


def _fill(workspace: Workspace) -> None:
    """Flows, versions, a schedule, runs with states, task runs and log lines."""
    version = DagFlowVersionFactory(flow__workspace=workspace, flow__project__workspace=workspace)
    ScheduleFactory(flow=version.flow)
    state = FlowRunStateFactory(flow_run__flow_version=version)
    TaskRunStateFactory(task_run__flow_run=state.flow_run)
    LogEntryFactory(flow_run=state.flow_run)


def _rows_of(workspace_id) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Every tenant row still naming the workspace, per model (empty when nothing remains)."""
    counts = {}
    with rls_bypass():
        for model in apps.get_models():
            if issubclass(model, TenantModel):
                n = model.all_objects.filter(workspace_id=workspace_id).count()
                if n:
                    counts[model.__name__] = n
    n = Membership.objects.filter(workspace_id=workspace_id).count()
    if n:
        counts["Membership"] = n
    return counts


def test_the_owner_deletes_the_workspace_and_nothing_of_it_remains(
    world_a, world_b, caplog, django_capture_on_commit_callbacks
):
    _fill(world_a.workspace)
    _fill(world_b.workspace)
    workspace_id = world_a.workspace.pk
    assert _rows_of(workspace_id)
    before_b = _rows_of(world_b.workspace.pk)

    with caplog.at_level(logging.INFO, logger="flowdeck.audit"), django_capture_on_commit_callbacks(execute=True):
        response = world_a.client(Role.OWNER).delete(world_a.url(), {"confirm_slug": "acme"}, format="json")
    assert response.status_code == 204, response.content
    assert not Workspace.objects.filter(pk=workspace_id).exists()
    assert _rows_of(workspace_id) == {}
    assert _rows_of(world_b.workspace.pk) == before_b  # the other workspace is untouched
    [record] = [r for r in caplog.records if r.name == "flowdeck.audit"]
    assert record.audit["action"] == "workspace.deleted"  # type: ignore[attr-defined]
    assert record.audit["slug"] == "acme"  # type: ignore[attr-defined]
    assert record.audit["actor"] == world_a.users[Role.OWNER].email  # type: ignore[attr-defined]
    # The former members no longer reach it.
    assert world_a.client(Role.DEVELOPER).get(world_a.url()).status_code == 404


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_only_owners_may_delete(world_a, role):
    response = world_a.client(role).delete(world_a.url(), {"confirm_slug": "acme"}, format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert error["message"].endswith("cannot delete the workspace. Ask an Owner for the Owner role.")
    assert Workspace.objects.filter(pk=world_a.workspace.pk).exists()


def test_another_workspaces_owner_gets_not_found(world_a, world_b):
    response = world_b.client(Role.OWNER).delete(world_a.url(), {"confirm_slug": "acme"}, format="json")
    assert response.status_code == 404
    assert Workspace.objects.filter(pk=world_a.workspace.pk).exists()


def test_a_wrong_slug_is_refused_with_a_clear_message(world_a):
    response = world_a.client(Role.OWNER).delete(world_a.url(), {"confirm_slug": "Acme "}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "confirmation_mismatch"
    assert error["message"] == "The confirmation does not match: type the workspace's slug, acme, to delete it."
    assert error["details"] == {"confirm_slug": ["Type acme to confirm."]}
    missing = world_a.client(Role.OWNER).delete(world_a.url(), {}, format="json")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid"
    assert Workspace.objects.filter(pk=world_a.workspace.pk).exists()


def test_graphql_delete_for_the_owner_and_refusals(world_a, world_b):
    from tests.accounts.test_graphql import gql, login, ok

    wrong = ok(gql(login(world_a.users[Role.OWNER]), DELETE_WORKSPACE, {"workspace": "acme", "confirmSlug": "nope"}))
    assert wrong["deleteWorkspace"]["ok"] is False
    assert wrong["deleteWorkspace"]["errors"][0]["code"] == "confirmation_mismatch"
    assert wrong["deleteWorkspace"]["errors"][0]["field"] == "confirmSlug"
    viewer = ok(gql(login(world_a.users[Role.VIEWER]), DELETE_WORKSPACE, {"workspace": "acme", "confirmSlug": "acme"}))
    assert viewer["deleteWorkspace"]["errors"][0]["code"] == "permission_denied"
    outsider = ok(gql(login(world_b.users[Role.OWNER]), DELETE_WORKSPACE, {"workspace": "acme", "confirmSlug": "acme"}))
    assert outsider["deleteWorkspace"]["errors"][0]["code"] == "not_found"
    assert Workspace.objects.filter(pk=world_a.workspace.pk).exists()

    done = ok(gql(login(world_a.users[Role.OWNER]), DELETE_WORKSPACE, {"workspace": "acme", "confirmSlug": "acme"}))
    assert done["deleteWorkspace"] == {"ok": True, "errors": []}
    assert not Workspace.objects.filter(pk=world_a.workspace.pk).exists()
    assert _rows_of(world_a.workspace.pk) == {}
