"""The orchestration reads of the web app over GraphQL: dashboard, projects, flow detail, run lists
with filters and cursors, run detail with history, task runs and logs, agents with liveness — and
bad arguments answered with codes, never a 500."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts.authz import principal_for_user
from accounts.models import Role
from core.tenancy import workspace_scope
from orchestration.services import flows
from tests.accounts.test_graphql import error_codes, gql, login, ok
from tests.orchestration.factories import AgentFactory, FlowRunFactory, ProjectFactory, TaskRunFactory

from .factories import DagFlowVersionFactory, FlowRunStateFactory, LogEntryFactory, ScheduleFactory


def orchestration(world, role: str, selection: str, variables: dict | None = None, declarations: str = "") -> dict:
    """``orchestration(workspace: <world's slug>) { selection }`` as ``role``; the data, no errors."""
    header = f"query($ws: String!{', ' + declarations if declarations else ''})"
    body = gql(login(world.users[role]), f"{header} {{ orchestration(workspace: $ws) {{ {selection} }} }}",
               {"ws": world.workspace.slug, **(variables or {})})
    return ok(body)["orchestration"]


def test_projects_list_their_unarchived_flows(world_a, dag_flow):
    # given a second project with two flows, one archived
    other = ProjectFactory(workspace=world_a.workspace, name="ml")
    DagFlowVersionFactory(flow__project=other, flow__workspace=world_a.workspace, flow__name="train")
    DagFlowVersionFactory(flow__project=other, flow__workspace=world_a.workspace, flow__name="old",
                          flow__is_archived=True)
    # when a viewer lists projects
    data = orchestration(world_a, Role.VIEWER, "projects { name description flows { id name } }")
    # then both projects come back by name with their live flows
    assert [(p["name"], p["description"], [f["name"] for f in p["flows"]]) for p in data["projects"]] == [
        ("etl", "Warehouse loads", ["nightly"]),
        ("ml", "", ["train"]),
    ]
    assert data["projects"][0]["flows"][0]["id"] == str(dag_flow.pk)


FLOW = """flow(id: $id) { id name project { name }
  activeVersion { version tasks edges parameters labels storage runConfig schedule }
  versions { version isArchived } schedules { kind cron timezone isActive intervalSeconds rrule }
  recentRuns(first: 2) { name stateType } }"""


def test_flow_detail_has_the_active_version_dag_versions_schedules_and_recent_runs(world_a, dag_version):
    flow = dag_version.flow
    # given an archived newer version, a schedule and three runs
    DagFlowVersionFactory(flow=flow, version=2, is_archived=True)
    ScheduleFactory(flow=flow)
    for name in ("first", "second", "third"):
        FlowRunFactory(flow_version=dag_version, name=name)
    data = orchestration(world_a, Role.VIEWER, FLOW, {"id": str(flow.pk)}, "$id: ID!")["flow"]
    assert data["name"] == "nightly" and data["project"] == {"name": "etl"}
    # the active version is the newest unarchived one, with its DAG and parameter schema
    active = data["activeVersion"]
    assert active["version"] == 1
    assert [t["key"] for t in active["tasks"]] == ["extract", "transform", "load", "report"]
    assert {"upstream": "extract", "downstream": "transform", "key": "rows"} in active["edges"]
    assert [p["name"] for p in active["parameters"]] == ["date", "limit", "dry_run"]
    assert active["runConfig"] == {"agent_type": "process", "env": ["DB_URL"]}
    assert active["labels"] == ["etl"] and active["schedule"] is None
    assert data["versions"] == [{"version": 2, "isArchived": True}, {"version": 1, "isArchived": False}]
    assert data["schedules"] == [
        {"kind": "cron", "cron": "0 * * * *", "timezone": "Europe/Paris", "isActive": True, "intervalSeconds": None,
         "rrule": ""}
    ]
    assert [r["name"] for r in data["recentRuns"]] == ["third", "second"]


def test_a_pinned_version_is_the_active_one(world_a, dag_version):
    flow = dag_version.flow
    DagFlowVersionFactory(flow=flow, version=2)
    actor = principal_for_user(world_a.users[Role.DEVELOPER], world_a.workspace)
    with workspace_scope([world_a.workspace.pk]):
        flows.flow_pin_version(actor=actor, flow=flow, version=dag_version)
    data = orchestration(world_a, Role.VIEWER, "flow(id: $id) { activeVersion { version } }", {"id": str(flow.pk)},
                         "$id: ID!")
    assert data["flow"]["activeVersion"] == {"version": 1}


RUNS = """flowRuns(filter: $filter, first: $first, after: $after) {
  edges { cursor node { name stateType stateName labels flow { name } agent { name } taskRuns { taskKey } } }
  pageInfo { hasNextPage endCursor } }"""
RUNS_DECL = "$filter: FlowRunFilter, $first: Int, $after: String"


@pytest.fixture
def runs(world_a, dag_version):
    """Four runs of "nightly" (oldest first) and one of another flow, newest."""
    base = timezone.now() - timedelta(hours=1)
    agent = AgentFactory(workspace=world_a.workspace, name="laptop")
    made = [
        FlowRunFactory(flow_version=dag_version, name="r1", created_at=base, labels=["etl", "gpu"]),
        FlowRunFactory(flow_version=dag_version, name="r2", created_at=base + timedelta(minutes=1), state_type="FAILED",
                       state_name="Failed", agent=agent),
        FlowRunFactory(flow_version=dag_version, name="r3", created_at=base + timedelta(minutes=2),
                       state_type="RUNNING",
                       state_name="Running", labels=["etl"], agent=agent),
        FlowRunFactory(flow_version=dag_version, name="r4", created_at=base + timedelta(minutes=3), state_name="Late"),
    ]
    TaskRunFactory(flow_run=made[2], task_key="extract")
    other = DagFlowVersionFactory(flow__project=dag_version.flow.project, flow__workspace=world_a.workspace)
    made.append(FlowRunFactory(flow_version=other, name="r5", created_at=base + timedelta(minutes=4)))
    return made


def test_flow_runs_are_newest_first_with_flow_agent_and_task_runs(world_a, runs):
    data = orchestration(world_a, Role.VIEWER, RUNS, {}, RUNS_DECL)["flowRuns"]
    nodes = [e["node"] for e in data["edges"]]
    assert [n["name"] for n in nodes] == ["r5", "r4", "r3", "r2", "r1"]
    assert nodes[2] == {"name": "r3", "stateType": "RUNNING", "stateName": "Running", "labels": ["etl"],
                        "flow": {"name": "nightly"}, "agent": {"name": "laptop"}, "taskRuns": [{"taskKey": "extract"}]}
    assert nodes[0]["agent"] is None and nodes[0]["taskRuns"] == []
    assert data["pageInfo"]["hasNextPage"] is False


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"stateTypes": ["FAILED", "RUNNING"]}, ["r3", "r2"]),
        ({"stateName": "Late"}, ["r4"]),
        ({"labels": ["etl"]}, ["r3", "r1"]),
        ({"labels": ["etl", "gpu"]}, ["r1"]),
        ({"stateTypes": ["SCHEDULED"], "labels": ["etl"]}, ["r1"]),
        ({"flowId": "not-a-uuid"}, []),
    ],
)
def test_flow_runs_filter(world_a, runs, filter_, expected):
    data = orchestration(world_a, Role.VIEWER, RUNS, {"filter": filter_}, RUNS_DECL)["flowRuns"]
    assert [e["node"]["name"] for e in data["edges"]] == expected


def test_flow_runs_filter_by_flow(world_a, runs, dag_flow):
    data = orchestration(world_a, Role.VIEWER, RUNS, {"filter": {"flowId": str(dag_flow.pk)}}, RUNS_DECL)["flowRuns"]
    assert [e["node"]["name"] for e in data["edges"]] == ["r4", "r3", "r2", "r1"]


def test_flow_runs_pages_follow_the_cursor(world_a, runs):
    first = orchestration(world_a, Role.VIEWER, RUNS, {"first": 2}, RUNS_DECL)["flowRuns"]
    assert [e["node"]["name"] for e in first["edges"]] == ["r5", "r4"] and first["pageInfo"]["hasNextPage"]
    second = orchestration(world_a, Role.VIEWER, RUNS, {"first": 2, "after": first["pageInfo"]["endCursor"]},
                           RUNS_DECL)["flowRuns"]
    assert [e["node"]["name"] for e in second["edges"]] == ["r3", "r2"] and second["pageInfo"]["hasNextPage"]
    last = orchestration(world_a, Role.VIEWER, RUNS, {"first": 2, "after": second["pageInfo"]["endCursor"]},
                         RUNS_DECL)["flowRuns"]
    assert [e["node"]["name"] for e in last["edges"]] == ["r1"] and not last["pageInfo"]["hasNextPage"]


RUN = """flowRun(id: $id) { id name stateType stateName stateMessage stateVersion parameters labels scheduledStart
  startTime endTime attempt agent { name } flow { id name } flowVersion { version }
  stateHistory { type name message timestamp }
  taskRuns { taskKey mapIndex stateType stateName attempt }
  logs(first: $first, afterSequence: $after) { sequence level logger message } }"""
RUN_DECL = "$id: ID!, $first: Int, $after: Float"


def test_flow_run_detail_has_history_task_runs_and_logs(world_a, dag_version):
    agent = AgentFactory(workspace=world_a.workspace, name="laptop")
    run = FlowRunFactory(flow_version=dag_version, name="detail", parameters={"date": "2026-01-01"}, labels=["etl"],
                         state_type="RUNNING", state_name="Running", state_version=3, agent=agent, attempt=2)
    start = timezone.now() - timedelta(minutes=5)
    for n, (type_, name) in enumerate([("SCHEDULED", "Scheduled"), ("PENDING", "Pending"), ("RUNNING", "Running")]):
        FlowRunStateFactory(flow_run=run, type=type_, name=name, message=f"m{n}",
                            timestamp=start + timedelta(minutes=n))
    TaskRunFactory(flow_run=run, task_key="extract", state_type="COMPLETED", state_name="Success")
    TaskRunFactory(flow_run=run, task_key="transform", map_index=0, state_type="RUNNING", state_name="Running")
    for sequence in (1, 2, 3):
        LogEntryFactory(flow_run=run, sequence=sequence, message=f"line {sequence}")

    data = orchestration(world_a, Role.VIEWER, RUN, {"id": str(run.pk), "after": 1}, RUN_DECL)["flowRun"]

    assert (data["name"], data["stateType"], data["stateName"], data["stateVersion"], data["attempt"]) == (
        "detail", "RUNNING", "Running", 3, 2)
    assert data["parameters"] == {"date": "2026-01-01"} and data["labels"] == ["etl"]
    assert data["agent"] == {"name": "laptop"} and data["flow"]["name"] == "nightly"
    assert data["flowVersion"] == {"version": 1}
    assert [(s["type"], s["message"]) for s in data["stateHistory"]] == [
        ("SCHEDULED", "m0"), ("PENDING", "m1"), ("RUNNING", "m2")]
    assert data["taskRuns"] == [
        {"taskKey": "extract", "mapIndex": -1, "stateType": "COMPLETED", "stateName": "Success", "attempt": 1},
        {"taskKey": "transform", "mapIndex": 0, "stateType": "RUNNING", "stateName": "Running", "attempt": 1},
    ]
    assert [(line["sequence"], line["message"]) for line in data["logs"]] == [(2, "line 2"), (3, "line 3")]
    assert data["logs"][0]["level"] == 20 and data["logs"][0]["logger"] == "flowdeck.flow_runner"


def test_logs_are_capped_by_first(world_a, dag_version):
    run = FlowRunFactory(flow_version=dag_version)
    for sequence in range(1, 6):
        LogEntryFactory(flow_run=run, sequence=sequence)
    data = orchestration(world_a, Role.VIEWER, RUN, {"id": str(run.pk), "first": 2}, RUN_DECL)["flowRun"]
    assert [line["sequence"] for line in data["logs"]] == [1, 2]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_ids_are_null(world_a, dag_version, bad_id):
    data = orchestration(world_a, Role.OWNER, "flow(id: $id) { id } flowRun(id: $id) { id }", {"id": bad_id},
                         "$id: ID!")
    assert data == {"flow": None, "flowRun": None}


DASHBOARD = """dashboard { now countsByState { stateType count }
  runsByStateOverTime(hours: 24) { bucket stateType count }
  lateRuns(first: 5) { name } failingRuns(first: 5) { name } upcomingRuns(first: 5) { name }
  agents { name type labels status lastHeartbeatAt } }"""


def test_dashboard(world_a, dag_version):
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    FlowRunFactory(flow_version=dag_version, name="late", scheduled_start=now - timedelta(minutes=10))
    FlowRunFactory(flow_version=dag_version, name="soon", scheduled_start=now + timedelta(minutes=10))
    FlowRunFactory(flow_version=dag_version, name="later", scheduled_start=now + timedelta(hours=2))
    FlowRunFactory(flow_version=dag_version, name="failed", state_type="FAILED", state_name="Failed",
                   scheduled_start=hour - timedelta(hours=2) + timedelta(minutes=1),
                   state_timestamp=now - timedelta(minutes=1))
    FlowRunFactory(flow_version=dag_version, name="crashed", state_type="CRASHED", state_name="Crashed",
                   scheduled_start=hour - timedelta(hours=2) + timedelta(minutes=2), state_timestamp=now)
    FlowRunFactory(flow_version=dag_version, name="ancient", state_type="COMPLETED", state_name="Completed",
                   scheduled_start=now - timedelta(days=3))
    AgentFactory(workspace=world_a.workspace, name="a-healthy", last_heartbeat_at=now, last_poll_at=now,
                 labels=["gpu"], type="docker")
    AgentFactory(workspace=world_a.workspace, name="b-unhealthy", last_heartbeat_at=now,
                 last_poll_at=now - timedelta(hours=1), created_at=now - timedelta(days=1))
    AgentFactory(workspace=world_a.workspace, name="c-offline", last_heartbeat_at=now - timedelta(hours=1))

    data = orchestration(world_a, Role.VIEWER, DASHBOARD)["dashboard"]

    assert data["now"]
    assert data["countsByState"] == [{"stateType": "SCHEDULED", "count": 3}, {"stateType": "FAILED", "count": 1},
                                     {"stateType": "CRASHED", "count": 1}]
    buckets = {(b["bucket"], b["stateType"]): b["count"] for b in data["runsByStateOverTime"]}
    two_hours_ago = (hour - timedelta(hours=2)).isoformat()
    assert buckets[(two_hours_ago, "FAILED")] == 1 and buckets[(two_hours_ago, "CRASHED")] == 1
    assert sum(buckets.values()) == 3  # the late run; future and 3-day-old runs are outside the window
    assert [r["name"] for r in data["lateRuns"]] == ["late"]
    assert [r["name"] for r in data["failingRuns"]] == ["crashed", "failed"]
    assert [r["name"] for r in data["upcomingRuns"]] == ["soon", "later"]
    assert [(a["name"], a["status"]) for a in data["agents"]] == [
        ("a-healthy", "healthy"), ("b-unhealthy", "unhealthy"), ("c-offline", "offline")]
    assert data["agents"][0]["labels"] == ["gpu"] and data["agents"][0]["type"] == "docker"


def test_agents_list_with_status(world_a):
    now = timezone.now()
    AgentFactory(workspace=world_a.workspace, name="never-seen")
    AgentFactory(workspace=world_a.workspace, name="alive", last_heartbeat_at=now, last_poll_at=now)
    data = orchestration(world_a, Role.VIEWER, "agents { name status lastHeartbeatAt }")
    assert [(a["name"], a["status"]) for a in data["agents"]] == [("alive", "healthy"), ("never-seen", "offline")]


# --- Restricted projects ------------------------------------------------------------------------


@pytest.fixture
def secret_run(world_a):
    project = ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    version = DagFlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="hidden")
    return FlowRunFactory(flow_version=version, name="hidden-run", state_type="FAILED", state_name="Failed")


EVERYTHING = """projects { name } flow(id: $flow) { name } flowRun(id: $run) { name }
  flowRuns { edges { node { name } } } dashboard { failingRuns { name } countsByState { count } }"""


def test_a_restricted_project_is_invisible_to_a_developer_without_a_grant(world_a, secret_run):
    variables = {"flow": str(secret_run.flow_id), "run": str(secret_run.pk)}
    data = orchestration(world_a, Role.DEVELOPER, EVERYTHING, variables, "$flow: ID!, $run: ID!")
    assert data == {"projects": [], "flow": None, "flowRun": None, "flowRuns": {"edges": []},
                    "dashboard": {"failingRuns": [], "countsByState": []}}


def test_a_restricted_project_is_visible_to_admins_and_to_those_granted_view(world_a, secret_run):
    variables = {"flow": str(secret_run.flow_id), "run": str(secret_run.pk)}
    assign_perm("view_project", world_a.users[Role.VIEWER], secret_run.flow.project)
    for role in (Role.ADMIN, Role.VIEWER):
        data = orchestration(world_a, role, EVERYTHING, variables, "$flow: ID!, $run: ID!")
        assert data["projects"] == [{"name": "secret"}] and data["flow"] == {"name": "hidden"}
        assert data["flowRun"] == {"name": "hidden-run"}
        assert data["dashboard"]["failingRuns"] == [{"name": "hidden-run"}]


# --- Who may read, and bad arguments ----------------------------------------------------------


def test_anonymous_and_non_members_get_null(world_a, world_b):
    query = 'query { orchestration(workspace: "acme") { projects { name } } }'
    assert ok(gql(login(), query)) == {"orchestration": None}
    assert ok(gql(login(world_b.users[Role.OWNER]), query)) == {"orchestration": None}
    unknown = 'query { orchestration(workspace: "nope") { agents { id } } }'
    assert ok(gql(login(world_a.users[Role.OWNER]), unknown)) == {"orchestration": None}


@pytest.mark.parametrize(
    ("selection", "code"),
    [
        ("flowRuns(first: 101) { edges { cursor } }", "invalid_argument"),
        ("flowRuns(first: -1) { edges { cursor } }", "invalid_argument"),
        ('flowRuns(after: "garbage!") { edges { cursor } }', "invalid_cursor"),
        ('flowRuns(filter: {stateTypes: ["DONE"]}) { edges { cursor } }', "invalid_argument"),
        ("dashboard { countsByState(hours: 0) { count } }", "invalid_argument"),
        ("dashboard { runsByStateOverTime(hours: 100000) { count } }", "invalid_argument"),
        ("dashboard { lateRuns(first: 1000) { id } }", "invalid_argument"),
    ],
)
def test_bad_arguments_are_field_errors_with_a_code(world_a, selection, code):
    body = gql(login(world_a.users[Role.VIEWER]), f'query {{ orchestration(workspace: "acme") {{ {selection} }} }}')
    assert error_codes(body) == [code]


def test_a_viewer_reads_logs(world_a, dag_version):
    run = FlowRunFactory(flow_version=dag_version)
    LogEntryFactory(flow_run=run, sequence=1, message="hello")
    data = orchestration(world_a, Role.VIEWER, "flowRun(id: $id) { logs { message } }", {"id": str(run.pk)}, "$id: ID!")
    assert data["flowRun"]["logs"] == [{"message": "hello"}]
