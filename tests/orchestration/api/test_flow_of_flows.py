"""Flow of flows over REST: a run created with ``parent_flow_run`` (and ``parent_task_run``) links
to its parent, the run list filters a parent's children, and a parent of another workspace is
refused with a 400 that names the field, linking nothing."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowRun
from tests.orchestration.api.conftest import assert_error, register
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, TaskRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def flow(world_a, metadata):
    return register(world_a.client(Role.DEVELOPER), world_a, metadata).json()["flow"]


def _create(world, flow, **body):
    return world.client(Role.DEVELOPER, key=True).post(world.url("flow-runs/"), {"flow": flow["id"], **body},
                                                       format="json")


def test_a_child_run_links_to_its_parent_run_and_task_run(world_a, flow):
    parent = _create(world_a, flow).json()
    with rls_bypass():
        task_run = TaskRunFactory(flow_run=FlowRun.all_objects.get(pk=parent["id"]), task_key="start-child")

    child = _create(world_a, flow, parent_flow_run=parent["id"], parent_task_run=str(task_run.pk))

    assert child.status_code == 201, child.content
    assert child.json()["parent_flow_run"] == parent["id"]
    assert child.json()["parent_task_run"] == str(task_run.pk)
    detail = world_a.client(Role.VIEWER).get(world_a.url(f"flow-runs/{child.json()['id']}/")).json()
    assert detail["parent_flow_run"] == parent["id"] and detail["parent_task_run"] == str(task_run.pk)
    assert _create(world_a, flow).json()["parent_flow_run"] is None  # a run nobody started has no parent


def test_a_parent_task_run_alone_makes_its_run_the_parent(world_a, flow):
    parent = _create(world_a, flow).json()
    with rls_bypass():
        task_run = TaskRunFactory(flow_run=FlowRun.all_objects.get(pk=parent["id"]))

    child = _create(world_a, flow, parent_task_run=str(task_run.pk)).json()

    assert child["parent_flow_run"] == parent["id"] and child["parent_task_run"] == str(task_run.pk)


def test_a_parent_task_run_of_another_run_than_the_parent_is_refused(world_a, flow):
    parent, other = _create(world_a, flow).json(), _create(world_a, flow).json()
    with rls_bypass():
        task_run = TaskRunFactory(flow_run=FlowRun.all_objects.get(pk=other["id"]))

    response = _create(world_a, flow, parent_flow_run=parent["id"], parent_task_run=str(task_run.pk))

    assert "parent_task_run" in assert_error(response, 400, "invalid_parent_task_run")["details"]


def test_the_run_list_filters_a_parents_children(world_a, flow):
    parent, other_parent = _create(world_a, flow).json(), _create(world_a, flow).json()
    children = [_create(world_a, flow, parent_flow_run=parent["id"]).json()["id"] for _ in range(3)]
    _create(world_a, flow, parent_flow_run=other_parent["id"])

    listed = world_a.client(Role.VIEWER).get(world_a.url("flow-runs/"), {"parent_flow_run": parent["id"]})

    assert listed.status_code == 200, listed.content
    assert sorted(r["id"] for r in listed.json()["results"]) == sorted(children)
    assert all(r["parent_flow_run"] == parent["id"] for r in listed.json()["results"])
    nobody = world_a.client(Role.VIEWER).get(world_a.url("flow-runs/"), {"parent_flow_run": str(uuid.uuid4())})
    assert nobody.json()["results"] == []
    assert_error(world_a.client(Role.VIEWER).get(world_a.url("flow-runs/"), {"parent_flow_run": "nope"}), 400)


def test_a_parent_run_of_another_workspace_is_refused_and_nothing_is_linked(world_a, world_b, flow):
    # given: a run and a task run in workspace B
    theirs = FlowRunFactory(flow_version=FlowVersionFactory(flow__workspace=world_b.workspace,
                                                            flow__project__workspace=world_b.workspace))
    their_task_run = TaskRunFactory(flow_run=theirs)

    # when: workspace A's developer names them as the parent of a new run
    by_run = _create(world_a, flow, parent_flow_run=str(theirs.pk))
    by_task_run = _create(world_a, flow, parent_task_run=str(their_task_run.pk))
    unknown = _create(world_a, flow, parent_flow_run=str(uuid.uuid4()))

    # then: 400 naming the field, with the same words as for a run that does not exist at all
    error = assert_error(by_run, 400, "invalid_parent_flow_run")
    assert "parent_flow_run" in error["details"] and "same workspace" in error["message"]
    assert assert_error(unknown, 400, "invalid_parent_flow_run")["message"] == error["message"]
    assert "parent_task_run" in assert_error(by_task_run, 400, "invalid_parent_task_run")["details"]
    with rls_bypass():
        assert not FlowRun.all_objects.filter(workspace=world_a.workspace).exists()  # nothing created
        assert not FlowRun.all_objects.filter(parent_flow_run=theirs).exists()
    # and B's runs never list A's runs as their children
    listed = world_b.client(Role.VIEWER).get(world_b.url("flow-runs/"), {"parent_flow_run": str(theirs.pk)})
    assert listed.json()["results"] == []


def test_deleting_a_parent_keeps_its_children_without_the_link(world_a, flow):
    parent = _create(world_a, flow).json()
    child = _create(world_a, flow, parent_flow_run=parent["id"]).json()

    deleted = world_a.client(Role.DEVELOPER).delete(world_a.url(f"flow-runs/{parent['id']}/"))

    assert deleted.status_code == 204
    detail = world_a.client(Role.VIEWER).get(world_a.url(f"flow-runs/{child['id']}/"))
    assert detail.status_code == 200 and detail.json()["parent_flow_run"] is None


def test_the_schema_documents_the_parent_fields_and_filter(api):
    schema = api.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    document = schema.json()
    components = document["components"]["schemas"]
    assert {"parent_flow_run", "parent_task_run"} <= set(components["FlowRunCreateInRequest"]["properties"])
    assert {"parent_flow_run", "parent_task_run"} <= set(components["FlowRunOut"]["properties"])
    listing = next(item for path, item in document["paths"].items() if path.endswith("/flow-runs/"))
    assert "parent_flow_run" in {p["name"] for p in listing["get"]["parameters"]}
