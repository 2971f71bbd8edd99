"""Flow of flows in GraphQL: a run names its parent (``parentFlowRun``) and its children
(``childFlowRuns``), both read through dataloaders (the same number of queries for one run as for
twenty), both limited to what the viewer may see; ``flowRuns`` filters a parent's children."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory, TaskRunFactory

RUN = """query($id: ID!) { orchestration(workspace: "acme") { flowRun(id: $id) { id name
  parentFlowRun { id name } parentTaskRunId childFlowRuns { id name parentFlowRun { id } } } } }"""

RUNS = """query { orchestration(workspace: "acme") { flowRuns(first: 100) { edges { node {
  id parentFlowRun { id name flow { name } } childFlowRuns(first: 5) { id name } } } } } }"""

CHILDREN = """query($parent: ID!) { orchestration(workspace: "acme") {
  flowRuns(filter: {parentFlowRunId: $parent}) { totalCount edges { node { id } } } } }"""


def _count(client, query: str, variables: dict | None = None) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    ok(gql(client, query, variables))  # warm the process-wide caches
    with CaptureQueriesContext(connection) as captured:
        data = ok(gql(client, query, variables))
    return len(captured.captured_queries), data


def test_a_run_shows_its_parent_and_its_children(world_a, dag_version):
    parent = FlowRunFactory(flow_version=dag_version, name="parent")
    task_run = TaskRunFactory(flow_run=parent, task_key="start-children")
    children = [FlowRunFactory(flow_version=dag_version, name=f"child-{i}", parent_flow_run=parent,
                               parent_task_run=task_run) for i in range(3)]
    client = login(world_a.users[Role.VIEWER])

    down = ok(gql(client, RUN, {"id": str(parent.pk)}))["orchestration"]["flowRun"]
    up = ok(gql(client, RUN, {"id": str(children[0].pk)}))["orchestration"]["flowRun"]

    assert down["parentFlowRun"] is None and down["parentTaskRunId"] is None
    assert sorted(c["name"] for c in down["childFlowRuns"]) == ["child-0", "child-1", "child-2"]
    assert all(c["parentFlowRun"] == {"id": str(parent.pk)} for c in down["childFlowRuns"])
    assert up["parentFlowRun"] == {"id": str(parent.pk), "name": "parent"}
    assert up["parentTaskRunId"] == str(task_run.pk)
    assert up["childFlowRuns"] == []


def test_parents_and_children_cost_the_same_queries_for_1_and_20_runs(world_a, dag_version):
    client = login(world_a.users[Role.DEVELOPER])

    def family() -> None:
        parent = FlowRunFactory(flow_version=dag_version)
        for _ in range(2):
            FlowRunFactory(flow_version=dag_version, parent_flow_run=parent)

    family()
    one, _ = _count(client, RUNS)
    for _ in range(19):
        family()
    twenty, data = _count(client, RUNS)

    nodes = [edge["node"] for edge in data["orchestration"]["flowRuns"]["edges"]]
    assert len(nodes) == 60
    assert sum(1 for n in nodes if n["parentFlowRun"] is not None) == 40
    assert sum(len(n["childFlowRuns"]) for n in nodes) == 40
    assert twenty == one


def test_child_flow_runs_takes_the_newest_first_per_parent(world_a, dag_version):
    parents = [FlowRunFactory(flow_version=dag_version) for _ in range(2)]
    for parent in parents:
        for i in range(4):
            FlowRunFactory(flow_version=dag_version, parent_flow_run=parent, name=f"{parent.pk}-{i}")
    query = """query { orchestration(workspace: "acme") { flowRuns(first: 100, filter: {createdBy: "api"}) {
      edges { node { id childFlowRuns(first: 2) { name } } } } } }"""

    nodes = ok(gql(login(world_a.users[Role.VIEWER]), query))["orchestration"]["flowRuns"]["edges"]

    by_id = {edge["node"]["id"]: edge["node"]["childFlowRuns"] for edge in nodes}
    for parent in parents:
        assert [c["name"] for c in by_id[str(parent.pk)]] == [f"{parent.pk}-3", f"{parent.pk}-2"]


def test_the_run_filter_lists_a_parents_children(world_a, dag_version):
    parent = FlowRunFactory(flow_version=dag_version)
    children = {str(FlowRunFactory(flow_version=dag_version, parent_flow_run=parent).pk) for _ in range(3)}
    FlowRunFactory(flow_version=dag_version)

    found = ok(gql(login(world_a.users[Role.VIEWER]), CHILDREN, {"parent": str(parent.pk)}))
    runs = found["orchestration"]["flowRuns"]

    assert runs["totalCount"] == 3 and {e["node"]["id"] for e in runs["edges"]} == children


def test_links_into_a_restricted_project_are_hidden_from_those_who_cannot_see_it(world_a, dag_version):
    secret = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_a.workspace, is_restricted=True),
                                flow__workspace=world_a.workspace)
    hidden_parent = FlowRunFactory(flow_version=secret)
    child = FlowRunFactory(flow_version=dag_version, parent_flow_run=hidden_parent)
    parent = FlowRunFactory(flow_version=dag_version)
    FlowRunFactory(flow_version=secret, parent_flow_run=parent)

    viewer = login(world_a.users[Role.VIEWER])
    admin = login(world_a.users[Role.ADMIN])

    assert ok(gql(viewer, RUN, {"id": str(child.pk)}))["orchestration"]["flowRun"]["parentFlowRun"] is None
    assert ok(gql(viewer, RUN, {"id": str(parent.pk)}))["orchestration"]["flowRun"]["childFlowRuns"] == []
    assert ok(gql(admin, RUN, {"id": str(child.pk)}))["orchestration"]["flowRun"]["parentFlowRun"]["id"] == \
        str(hidden_parent.pk)
    assert len(ok(gql(admin, RUN, {"id": str(parent.pk)}))["orchestration"]["flowRun"]["childFlowRuns"]) == 1


def test_a_link_to_another_workspaces_run_never_shows_it(world_a, world_b, dag_version):
    # given: rows linked across workspaces behind the service's back (the service refuses it)
    theirs = FlowRunFactory(flow_version=FlowVersionFactory(flow__workspace=world_b.workspace,
                                                            flow__project__workspace=world_b.workspace))
    ours = FlowRunFactory(flow_version=dag_version, parent_flow_run=theirs)
    their_child = FlowRunFactory(flow_version=theirs.flow_version, parent_flow_run=ours)

    # when / then: A's run shows neither B's parent nor B's child, and B's runs do not show A's
    viewer = login(world_a.users[Role.VIEWER])
    run = ok(gql(viewer, RUN, {"id": str(ours.pk)}))["orchestration"]["flowRun"]
    assert run["parentFlowRun"] is None and run["childFlowRuns"] == []
    query_b = RUN.replace('"acme"', '"globex"')
    seen_by_b = ok(gql(login(world_b.users[Role.ADMIN]), query_b, {"id": str(their_child.pk)}))
    assert seen_by_b["orchestration"]["flowRun"]["parentFlowRun"] is None
