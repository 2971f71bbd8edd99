"""Projects, flows and versions over REST: CRUD, roles, restricted projects, pinning, archiving,
bad input, and list endpoints whose query count does not grow with the rows."""

from __future__ import annotations

import pytest
from guardian.shortcuts import assign_perm

from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.models import Flow, FlowVersion, Project
from orchestration.selectors import flow_version_for_new_run
from tests.orchestration.api.conftest import assert_error, register
from tests.orchestration.factories import FlowFactory, FlowVersionFactory, ProjectFactory

pytestmark = pytest.mark.django_db


# --- projects -----------------------------------------------------------------------------------


def test_developer_creates_lists_updates_and_deletes_a_project(world_a):
    client = world_a.client(Role.DEVELOPER)
    created = client.post(world_a.url("projects/"), {"name": "ml", "description": "models"}, format="json")
    assert created.status_code == 201, created.content
    project_id = created.json()["id"]
    listed = client.get(world_a.url("projects/")).json()["results"]
    assert [p["name"] for p in listed] == ["ml"]
    updated = client.patch(world_a.url(f"projects/{project_id}/"), {"description": "new"}, format="json")
    assert updated.status_code == 200 and updated.json()["description"] == "new"
    assert client.get(world_a.url(f"projects/{project_id}/")).json()["name"] == "ml"
    assert client.delete(world_a.url(f"projects/{project_id}/")).status_code == 204
    with rls_bypass():
        assert not Project.all_objects.filter(pk=project_id).exists()


def test_project_names_are_unique_per_workspace(world_a):
    client = world_a.client(Role.DEVELOPER)
    client.post(world_a.url("projects/"), {"name": "ml"}, format="json")
    assert_error(client.post(world_a.url("projects/"), {"name": "ml"}, format="json"), 409, "name_taken")


def test_viewer_reads_but_cannot_write_projects(world_a):
    project = ProjectFactory(workspace=world_a.workspace, name="ml")
    viewer = world_a.client(Role.VIEWER)
    assert viewer.get(world_a.url("projects/")).status_code == 200
    assert_error(viewer.post(world_a.url("projects/"), {"name": "x"}, format="json"), 403, "permission_denied")
    assert_error(viewer.patch(world_a.url(f"projects/{project.pk}/"), {"name": "y"}, format="json"), 403)
    assert_error(viewer.delete(world_a.url(f"projects/{project.pk}/")), 403)


def test_agent_key_cannot_touch_projects(world_a):
    agent = world_a.client(Role.AGENT)
    assert_error(agent.get(world_a.url("projects/")), 403, "permission_denied")
    assert_error(agent.post(world_a.url("projects/"), {"name": "x"}, format="json"), 403)


def test_restricted_project_is_hidden_until_shared(world_a):
    secret = ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    ProjectFactory(workspace=world_a.workspace, name="open")
    developer = world_a.client(Role.DEVELOPER)
    assert [p["name"] for p in developer.get(world_a.url("projects/")).json()["results"]] == ["open"]
    assert_error(developer.get(world_a.url(f"projects/{secret.pk}/")), 404, "not_found")
    # an Admin sees it; once shared with the developer, so do they
    assert len(world_a.client(Role.ADMIN).get(world_a.url("projects/")).json()["results"]) == 2
    with rls_bypass():
        assign_perm("view_project", world_a.users[Role.DEVELOPER], secret)
    assert developer.get(world_a.url(f"projects/{secret.pk}/")).status_code == 200
    assert [p["name"] for p in developer.get(world_a.url("projects/")).json()["results"]] == ["open", "secret"]
    # the grant is personal: another member still does not see the project
    assert [p["name"] for p in world_a.client(Role.VIEWER, key=True).get(world_a.url("projects/")).json()["results"]] \
        == ["open"]


def test_only_admins_change_restriction(world_a):
    project = ProjectFactory(workspace=world_a.workspace, name="ml")
    response = world_a.client(Role.DEVELOPER).patch(world_a.url(f"projects/{project.pk}/"), {"is_restricted": True},
                                                   format="json")
    assert_error(response, 403)
    ok = world_a.client(Role.ADMIN).patch(world_a.url(f"projects/{project.pk}/"), {"is_restricted": True},
                                          format="json")
    assert ok.status_code == 200 and ok.json()["is_restricted"] is True


def test_only_admins_create_a_project_restricted(world_a):
    """A Developer may create projects, but not one hidden from the rest (which they could then not
    see either): the same rule as restricting one later."""
    refused = world_a.client(Role.DEVELOPER).post(world_a.url("projects/"), {"name": "ml", "is_restricted": True},
                                                  format="json")
    assert_error(refused, 403)
    assert not Project.all_objects.filter(workspace=world_a.workspace, name="ml").exists()
    ok = world_a.client(Role.ADMIN).post(world_a.url("projects/"), {"name": "ml", "is_restricted": True},
                                         format="json")
    assert ok.status_code == 201 and ok.json()["is_restricted"] is True
    plain = world_a.client(Role.DEVELOPER).post(world_a.url("projects/"), {"name": "open"}, format="json")
    assert plain.status_code == 201


@pytest.mark.parametrize(
    "body", [{}, {"name": ""}, {"name": "x" * 101}, {"name": "ok", "workspace": "other"}, {"name": ["a"]}, []]
)
def test_bad_project_bodies_are_400(world_a, body):
    assert_error(world_a.client(Role.DEVELOPER).post(world_a.url("projects/"), body, format="json"), 400)


def test_project_list_query_count_is_constant(world_a, django_assert_max_num_queries):
    client = world_a.client(Role.DEVELOPER)
    ProjectFactory(workspace=world_a.workspace, is_restricted=True)
    ProjectFactory(workspace=world_a.workspace)
    with django_assert_max_num_queries(12) as one:
        client.get(world_a.url("projects/"))
    for _ in range(19):
        ProjectFactory(workspace=world_a.workspace)
    with django_assert_max_num_queries(len(one.captured_queries)):
        # the restricted project stays hidden from the developer
        assert len(client.get(world_a.url("projects/")).json()["results"]) == 20


# --- flows --------------------------------------------------------------------------------------


def test_flows_list_filters_by_project_and_name(world_a, flow_a):
    other = FlowFactory(project__workspace=world_a.workspace, workspace=world_a.workspace, name="hourly")
    client = world_a.client(Role.VIEWER)
    assert {f["name"] for f in client.get(world_a.url("flows/")).json()["results"]} == {"nightly", "hourly"}
    by_project = client.get(world_a.url("flows/"), {"project": str(other.project_id)}).json()["results"]
    assert [f["name"] for f in by_project] == ["hourly"]
    assert [f["name"] for f in client.get(world_a.url("flows/"), {"name": "nightly"}).json()["results"]] == ["nightly"]
    assert_error(client.get(world_a.url("flows/"), {"project": "not-a-uuid"}), 400)


def test_flow_detail_update_and_delete(world_a, flow_a):
    client = world_a.client(Role.DEVELOPER)
    assert client.get(world_a.url(f"flows/{flow_a.pk}/")).json()["name"] == "nightly"
    response = client.patch(world_a.url(f"flows/{flow_a.pk}/"),
                            {"catchup": "latest", "max_lateness_seconds": 300, "concurrency_limit": None},
                            format="json")
    assert response.status_code == 200, response.content
    assert response.json()["catchup"] == "latest" and response.json()["max_lateness_seconds"] == 300
    assert client.delete(world_a.url(f"flows/{flow_a.pk}/")).status_code == 204
    with rls_bypass():
        assert not Flow.all_objects.filter(pk=flow_a.pk).exists()


@pytest.mark.parametrize(
    "body", [{"catchup": "sometimes"}, {"max_lateness_seconds": -1}, {"max_crash_retries": "x"}, {"state": "x"}]
)
def test_bad_flow_updates_are_400(world_a, flow_a, body):
    assert_error(world_a.client(Role.DEVELOPER).patch(world_a.url(f"flows/{flow_a.pk}/"), body, format="json"), 400)


def test_viewer_cannot_update_or_delete_a_flow(world_a, flow_a):
    viewer = world_a.client(Role.VIEWER)
    assert_error(viewer.patch(world_a.url(f"flows/{flow_a.pk}/"), {"catchup": "none"}, format="json"), 403)
    assert_error(viewer.delete(world_a.url(f"flows/{flow_a.pk}/")), 403)


def test_flow_list_query_count_is_constant(world_a, django_assert_max_num_queries):
    client = world_a.client(Role.VIEWER)
    project = ProjectFactory(workspace=world_a.workspace)
    FlowFactory(project=project)
    with django_assert_max_num_queries(12) as one:
        client.get(world_a.url("flows/"))
    for _ in range(19):
        FlowFactory(project=project)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(client.get(world_a.url("flows/")).json()["results"]) == 20


# --- versions -----------------------------------------------------------------------------------


def _two_versions(world, metadata):
    client = world.client(Role.DEVELOPER)
    first = register(client, world, metadata).json()
    metadata["labels"] = ["staging"]
    second = register(client, world, metadata).json()
    return client, first["flow"]["id"], first["version"]["id"], second["version"]["id"]


def test_versions_list_pin_unpin_and_archive(world_a, metadata):
    client, flow_id, v1, v2 = _two_versions(world_a, metadata)
    versions = client.get(world_a.url(f"flows/{flow_id}/versions/")).json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    # newest is active; pinning v1 makes it active; unpinning returns to the newest
    pinned = client.post(world_a.url(f"flows/{flow_id}/versions/{v1}/pin/"), {}, format="json")
    assert pinned.status_code == 200 and pinned.json()["pinned_version"] == v1
    with workspace_scope([world_a.workspace.pk]):
        assert str(flow_version_for_new_run(Flow.objects.for_workspace(world_a.workspace).get(pk=flow_id)).pk) == v1
    client.post(world_a.url(f"flows/{flow_id}/versions/{v1}/pin/"), {"pinned": False}, format="json")
    # archiving the newest makes the previous one active
    archived = client.post(world_a.url(f"flows/{flow_id}/versions/{v2}/archive/"), {}, format="json")
    assert archived.status_code == 200 and archived.json()["is_archived"] is True
    with workspace_scope([world_a.workspace.pk]):
        assert str(flow_version_for_new_run(Flow.objects.for_workspace(world_a.workspace).get(pk=flow_id)).pk) == v1
    # an archived version cannot be pinned
    assert_error(client.post(world_a.url(f"flows/{flow_id}/versions/{v2}/pin/"), {}, format="json"), 409,
                 "version_archived")


def test_version_of_another_flow_is_404(world_a, flow_a, metadata):
    other = FlowVersionFactory(flow__project=flow_a.project, flow__workspace=world_a.workspace)
    response = world_a.client(Role.DEVELOPER).post(world_a.url(f"flows/{flow_a.pk}/versions/{other.pk}/pin/"), {},
                                                   format="json")
    assert_error(response, 404, "not_found")


def test_viewer_cannot_archive_or_pin(world_a, flow_a):
    with rls_bypass():
        version = FlowVersion.all_objects.get(flow=flow_a)
    viewer = world_a.client(Role.VIEWER)
    assert_error(viewer.post(world_a.url(f"flows/{flow_a.pk}/versions/{version.pk}/archive/"), {}, format="json"), 403)
    assert_error(viewer.post(world_a.url(f"flows/{flow_a.pk}/versions/{version.pk}/pin/"), {"x": 1}, format="json"),
                 403)


def test_bad_version_action_bodies_are_400(world_a, flow_a):
    with rls_bypass():
        version = FlowVersion.all_objects.get(flow=flow_a)
    client = world_a.client(Role.DEVELOPER)
    url = world_a.url(f"flows/{flow_a.pk}/versions/{version.pk}/")
    assert_error(client.post(url + "archive/", {"archived": "maybe"}, format="json"), 400)
    assert_error(client.post(url + "pin/", {"unknown": True}, format="json"), 400)


def test_version_list_query_count_is_constant(world_a, flow_a, django_assert_max_num_queries):
    client = world_a.client(Role.VIEWER)
    with django_assert_max_num_queries(12) as one:
        client.get(world_a.url(f"flows/{flow_a.pk}/versions/"))
    for _ in range(19):
        FlowVersionFactory(flow=flow_a)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(client.get(world_a.url(f"flows/{flow_a.pk}/versions/")).json()["results"]) == 20


def test_deleting_a_flow_or_project_with_runs_deletes_the_runs(world_a, flow_a):
    from orchestration.models import FlowRun
    from tests.orchestration.factories import FlowRunFactory

    with rls_bypass():
        FlowRunFactory(flow_version=FlowVersion.all_objects.get(flow=flow_a))
        other = FlowVersionFactory(flow__project=flow_a.project, flow__workspace=world_a.workspace)
        FlowRunFactory(flow_version=other)
    client = world_a.client(Role.DEVELOPER)
    assert client.delete(world_a.url(f"flows/{flow_a.pk}/")).status_code == 204
    assert client.delete(world_a.url(f"projects/{flow_a.project_id}/")).status_code == 204
    with rls_bypass():
        assert not FlowRun.all_objects.filter(workspace=world_a.workspace).exists()
        assert not Flow.all_objects.filter(workspace=world_a.workspace).exists()
