"""The REST views' guards: a write endpoint declares a write scope (a grant on the object can allow it), the
run page reads the run once with a bounded number of queries, and a run of a restricted project is
404 on every run endpoint for those it is not shared with."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowRun, FlowVersion
from tests.orchestration.api.conftest import assert_error
from tests.orchestration.factories import (
    FlowRunFactory,
    FlowVersionFactory,
    ProjectFactory,
    TaskRunFactory,
)

pytestmark = pytest.mark.django_db


# --- write scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["patch", "delete"])
@pytest.mark.parametrize("target", ["project", "flow"])
def test_a_viewer_is_refused_a_write(world_a, flow_a, method, target):
    object_id = flow_a.project_id if target == "project" else flow_a.pk
    url = world_a.url(f"{target}s/{object_id}/")
    response = getattr(world_a.client(Role.VIEWER), method)(url, {"description": "x"}, format="json")
    assert_error(response, 403, "permission_denied")


def test_a_viewer_granted_manage_on_a_project_may_edit_that_project_only(world_a, flow_a):
    # The scope is a write, but one that a grant on the object can allow: the guard lets it through
    # and the service decides with the project in hand.
    shared = ProjectFactory(workspace=world_a.workspace, name="shared", is_restricted=True)
    assign_perm("manage_project", world_a.users[Role.VIEWER], shared)
    viewer = world_a.client(Role.VIEWER)
    response = viewer.patch(world_a.url(f"projects/{shared.pk}/"), {"description": "ours"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "ours"
    other = viewer.patch(world_a.url(f"projects/{flow_a.project_id}/"), {"description": "x"}, format="json")
    assert_error(other, 403, "permission_denied")


def test_a_developer_writes_projects_and_flows(world_a, flow_a):
    developer = world_a.client(Role.DEVELOPER)
    project_url = world_a.url(f"projects/{flow_a.project_id}/")
    flow_url = world_a.url(f"flows/{flow_a.pk}/")
    assert developer.patch(project_url, {"description": "p"}, format="json").json()["description"] == "p"
    assert developer.patch(flow_url, {"description": "f"}, format="json").json()["description"] == "f"
    assert developer.delete(flow_url).status_code == 204
    assert developer.delete(project_url).status_code == 204


def test_a_restricted_project_not_shared_is_404_for_writes_too(world_a):
    secret = ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    flow = FlowVersionFactory(flow__project=secret, flow__workspace=world_a.workspace).flow
    developer = world_a.client(Role.DEVELOPER)
    assert_error(developer.patch(world_a.url(f"projects/{secret.pk}/"), {"description": "x"}, format="json"), 404)
    assert_error(developer.delete(world_a.url(f"flows/{flow.pk}/")), 404)


# --- the run page -------------------------------------------------------------------------------


def _run_selects(queries: CaptureQueriesContext) -> list[str]:
    table = f'FROM "{FlowRun._meta.db_table}"'
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().startswith("SELECT") and table in q["sql"]]


def test_the_run_detail_view_reads_the_run_once_with_a_bounded_number_of_queries(
    world_a, flow_a, django_assert_max_num_queries
):
    with rls_bypass():
        run = FlowRunFactory(flow_version=FlowVersion.all_objects.get(flow=flow_a))
        for _ in range(5):
            TaskRunFactory(flow_run=run)
    client = world_a.client(Role.VIEWER)
    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(15):
        response = client.get(world_a.url(f"flow-runs/{run.pk}/"))
    assert response.status_code == 200 and len(response.json()["task_runs"]) == 5
    assert len(_run_selects(queries)) == 1, _run_selects(queries)


# --- restricted runs ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "states/", "task-runs/", "logs/"])
def test_a_run_of_a_restricted_project_is_404_on_every_read(world_a, suffix):
    secret = ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    with rls_bypass():
        run = FlowRunFactory(flow_version=FlowVersionFactory(flow__project=secret, flow__workspace=world_a.workspace))
    url = world_a.url(f"flow-runs/{run.pk}/{suffix}")
    assert_error(world_a.client(Role.DEVELOPER).get(url), 404)
    assert world_a.client(Role.ADMIN).get(url).status_code == 200


@pytest.mark.parametrize("action", ["cancel/", "restart/", "mark/"])
def test_a_run_of_a_restricted_project_is_404_for_manual_actions(world_a, action):
    secret = ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    with rls_bypass():
        run = FlowRunFactory(flow_version=FlowVersionFactory(flow__project=secret, flow__workspace=world_a.workspace))
    body = {"state_type": "FAILED"} if action == "mark/" else {}
    response = world_a.client(Role.DEVELOPER).post(world_a.url(f"flow-runs/{run.pk}/{action}"), body, format="json")
    assert_error(response, 404)
