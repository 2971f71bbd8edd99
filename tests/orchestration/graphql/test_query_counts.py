"""No N+1 in the orchestration GraphQL reads: the dashboard, the run list (with task runs and agents),
the flow page and the run page cost the same number of queries for one row as for twenty."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Role
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.factories import AgentFactory, FlowRunFactory, TaskRunFactory

from .factories import DagFlowVersionFactory, FlowRunStateFactory, LogEntryFactory, ScheduleFactory

DASHBOARD = """query { orchestration(workspace: "acme") { dashboard { now countsByState { stateType count }
  runsByStateOverTime { bucket stateType count }
  lateRuns { id name flow { name } agent { name } } failingRuns { id name flow { name } agent { name } }
  upcomingRuns { id name flow { name } } agents { id name status lastHeartbeatAt } } } }"""

RUNS = """query { orchestration(workspace: "acme") { flowRuns(first: 50) { edges { node {
  id name stateType flow { id name } agent { name } flowVersion { version }
  taskRuns { taskKey stateType } } } pageInfo { hasNextPage } } } }"""

FLOW = """query($id: ID!) { orchestration(workspace: "acme") { flow(id: $id) { id name project { name }
  activeVersion { version tasks edges parameters } versions { id version isArchived }
  schedules { id kind cron } recentRuns(first: 50) { id name stateType agent { name } taskRuns { taskKey } } } } }"""

RUN = """query($id: ID!) { orchestration(workspace: "acme") { flowRun(id: $id) { id name flow { name } agent { name }
  stateHistory { type } taskRuns { taskKey } logs { message } } } }"""


def _count(client, query: str, variables: dict | None = None) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    ok(gql(client, query, variables))  # warm the process-wide content-type cache that permission checks use
    with CaptureQueriesContext(connection) as captured:
        data = ok(gql(client, query, variables))
    return len(captured.captured_queries), data


def _runs(version, n: int, **kwargs) -> list:  # type: ignore[no-untyped-def]
    agent = AgentFactory(workspace=version.workspace)
    made = []
    for _ in range(n):
        run = FlowRunFactory(flow_version=version, agent=agent, **kwargs)
        TaskRunFactory(flow_run=run)
        TaskRunFactory(flow_run=run)
        made.append(run)
    return made


def test_dashboard_costs_the_same_for_1_and_20_of_everything(world_a, dag_version):
    client = login(world_a.users[Role.VIEWER])
    now = timezone.now()

    def add(n: int) -> None:
        _runs(dag_version, n, scheduled_start=now - timedelta(minutes=5))
        _runs(dag_version, n, scheduled_start=now + timedelta(minutes=5))
        _runs(dag_version, n, state_type="FAILED", state_name="Failed")
        for _ in range(n):
            AgentFactory(workspace=world_a.workspace, last_heartbeat_at=now)

    add(1)
    one, _ = _count(client, DASHBOARD)
    add(19)
    twenty, data = _count(client, DASHBOARD)
    dashboard = data["orchestration"]["dashboard"]
    assert len(dashboard["lateRuns"]) == 10 and len(dashboard["agents"]) > 20
    assert twenty == one


def test_flow_runs_cost_the_same_for_1_and_20_runs_with_task_runs_and_agents(
    world_a, dag_version, django_assert_max_num_queries
):
    client = login(world_a.users[Role.DEVELOPER])
    _runs(dag_version, 1)
    one, _ = _count(client, RUNS)
    _runs(dag_version, 19)
    twenty, data = _count(client, RUNS)
    nodes = [e["node"] for e in data["orchestration"]["flowRuns"]["edges"]]
    assert len(nodes) == 20 and all(len(n["taskRuns"]) == 2 and n["agent"] for n in nodes)
    assert twenty == one
    # session, user, RLS in/out, workspace, membership, runs (+flow, agent, version), task runs
    with django_assert_max_num_queries(12):
        ok(gql(client, RUNS))


def test_flow_page_costs_the_same_for_1_and_20_versions_schedules_and_runs(world_a, dag_version):
    client = login(world_a.users[Role.VIEWER])
    flow = dag_version.flow
    ScheduleFactory(flow=flow)
    _runs(dag_version, 1)
    one, _ = _count(client, FLOW, {"id": str(flow.pk)})
    for n in range(19):
        DagFlowVersionFactory(flow=flow, version=n + 2, is_archived=True)
        ScheduleFactory(flow=flow)
    _runs(dag_version, 19)
    twenty, data = _count(client, FLOW, {"id": str(flow.pk)})
    detail = data["orchestration"]["flow"]
    assert len(detail["versions"]) == 20 and len(detail["schedules"]) == 20 and len(detail["recentRuns"]) == 20
    assert twenty == one


def test_run_page_costs_the_same_for_1_and_20_task_runs_states_and_log_lines(world_a, dag_version):
    client = login(world_a.users[Role.VIEWER])
    run = FlowRunFactory(flow_version=dag_version, agent=AgentFactory(workspace=world_a.workspace))

    def add(n: int) -> None:
        for _ in range(n):
            TaskRunFactory(flow_run=run)
            FlowRunStateFactory(flow_run=run)
            LogEntryFactory(flow_run=run)

    add(1)
    one, _ = _count(client, RUN, {"id": str(run.pk)})
    add(19)
    twenty, data = _count(client, RUN, {"id": str(run.pk)})
    detail = data["orchestration"]["flowRun"]
    assert len(detail["taskRuns"]) == 20 and len(detail["stateHistory"]) == 20 and len(detail["logs"]) == 20
    assert twenty == one
