"""What the run page reads beyond the run itself: each task run's state history (the attempts of the
Gantt and the task-run detail), one task run by id, and the run's logs filtered by level, task run
and text. Lists nest without N+1, and nothing of another workspace or run leaks through an id."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from tests.accounts.test_graphql import error_codes, gql, login, ok
from tests.orchestration.factories import FlowRunFactory, TaskRunFactory

from .factories import LogEntryFactory, TaskRunStateFactory

TASK_RUNS = """query($id: ID!) { orchestration(workspace: "acme") { flowRun(id: $id) {
  taskRuns { id taskKey mapIndex tags stateTimestamp stateHistory { type name message timestamp } } } } }"""

TASK_RUN = """query($slug: String!, $run: ID!, $id: ID!) { orchestration(workspace: $slug) { flowRun(id: $run) {
  taskRun(id: $id) { id taskKey attempt stateHistory { type name } } } } }"""

LOGS = """query($slug: String!, $run: ID!, $level: Int, $task: ID, $search: String) {
  orchestration(workspace: $slug) { flowRun(id: $run) {
  logs(first: 100, levelGte: $level, taskRunId: $task, search: $search) { message level taskRunId } } } }"""


def _retried_task(run, key: str = "transform"):  # type: ignore[no-untyped-def]
    task = TaskRunFactory(flow_run=run, task_key=key, attempt=2, state_type="COMPLETED", state_name="Completed")
    for type_, name in [("PENDING", "Pending"), ("RUNNING", "Running"), ("SCHEDULED", "AwaitingRetry"),
                        ("RUNNING", "Running"), ("COMPLETED", "Completed")]:
        TaskRunStateFactory(task_run=task, type=type_, name=name)
    return task


def test_task_runs_carry_their_state_history_oldest_first(world_a, dag_version):
    run = FlowRunFactory(flow_version=dag_version)
    task = _retried_task(run)
    data = ok(gql(login(world_a.users[Role.VIEWER]), TASK_RUNS, {"id": str(run.pk)}))
    [row] = data["orchestration"]["flowRun"]["taskRuns"]
    assert row["id"] == str(task.pk)
    assert [s["name"] for s in row["stateHistory"]] == ["Pending", "Running", "AwaitingRetry", "Running", "Completed"]


def test_state_histories_cost_the_same_for_2_and_40_task_runs(world_a, dag_version):
    client = login(world_a.users[Role.VIEWER])
    run = FlowRunFactory(flow_version=dag_version)
    for n in range(2):
        _retried_task(run, f"t{n}")
    ok(gql(client, TASK_RUNS, {"id": str(run.pk)}))  # warm the permission caches
    with CaptureQueriesContext(connection) as two:
        ok(gql(client, TASK_RUNS, {"id": str(run.pk)}))
    for n in range(2, 40):
        _retried_task(run, f"t{n}")
    with CaptureQueriesContext(connection) as forty:
        data = ok(gql(client, TASK_RUNS, {"id": str(run.pk)}))
    assert len(data["orchestration"]["flowRun"]["taskRuns"]) == 40
    assert all(len(t["stateHistory"]) == 5 for t in data["orchestration"]["flowRun"]["taskRuns"])
    assert len(forty.captured_queries) == len(two.captured_queries)


def test_task_run_by_id_is_null_for_another_runs_or_workspaces_task_run(world_a, world_b, dag_version):
    run, other_run = FlowRunFactory(flow_version=dag_version), FlowRunFactory(flow_version=dag_version)
    task, other_task = _retried_task(run), _retried_task(other_run)
    client = login(world_a.users[Role.VIEWER])
    found = ok(gql(client, TASK_RUN, {"slug": "acme", "run": str(run.pk), "id": str(task.pk)}))
    assert found["orchestration"]["flowRun"]["taskRun"]["stateHistory"][-1] == {"type": "COMPLETED",
                                                                                 "name": "Completed"}
    for task_id in (str(other_task.pk), "not-a-uuid"):
        data = ok(gql(client, TASK_RUN, {"slug": "acme", "run": str(run.pk), "id": task_id}))
        assert data["orchestration"]["flowRun"]["taskRun"] is None
    # world B's members see nothing of world A's run, whatever slug they name
    outsider = login(world_b.users[Role.OWNER])
    for slug in ("acme", "globex"):
        data = ok(gql(outsider, TASK_RUN, {"slug": slug, "run": str(run.pk), "id": str(task.pk)}))
        assert data["orchestration"] is None or data["orchestration"]["flowRun"] is None


def test_logs_filter_by_level_task_run_and_text(world_a, dag_version):
    run = FlowRunFactory(flow_version=dag_version)
    extract, load = TaskRunFactory(flow_run=run, task_key="extract"), TaskRunFactory(flow_run=run, task_key="load")
    LogEntryFactory(flow_run=run, task_run=extract, level=10, message="connecting")
    LogEntryFactory(flow_run=run, task_run=extract, level=30, message="slow query on Orders")
    LogEntryFactory(flow_run=run, task_run=load, level=40, message="load failed: orders locked")
    LogEntryFactory(flow_run=run, level=20, message="flow started")
    client = login(world_a.users[Role.VIEWER])

    def messages(**filters) -> list[str]:  # type: ignore[no-untyped-def]
        data = ok(gql(client, LOGS, {"slug": "acme", "run": str(run.pk), **filters}))
        return [line["message"] for line in data["orchestration"]["flowRun"]["logs"]]

    assert messages() == ["connecting", "slow query on Orders", "load failed: orders locked", "flow started"]
    assert messages(level=30) == ["slow query on Orders", "load failed: orders locked"]
    assert messages(task=str(extract.pk)) == ["connecting", "slow query on Orders"]
    assert messages(search="ORDERS") == ["slow query on Orders", "load failed: orders locked"]
    assert messages(task=str(extract.pk), level=20, search="orders") == ["slow query on Orders"]


def test_logs_of_another_runs_task_run_are_empty_not_an_error(world_a, dag_version):
    run, other_run = FlowRunFactory(flow_version=dag_version), FlowRunFactory(flow_version=dag_version)
    other_task = TaskRunFactory(flow_run=other_run)
    LogEntryFactory(flow_run=other_run, task_run=other_task, message="other run's line")
    LogEntryFactory(flow_run=run, message="this run's line")
    data = ok(gql(login(world_a.users[Role.VIEWER]), LOGS,
                  {"slug": "acme", "run": str(run.pk), "task": str(other_task.pk)}))
    assert data["orchestration"]["flowRun"]["logs"] == []


def test_log_filters_out_of_range_are_invalid_arguments(world_a, dag_version):
    run = FlowRunFactory(flow_version=dag_version)
    client = login(world_a.users[Role.VIEWER])
    for variables in ({"level": 101}, {"search": "x" * 201}):
        body = gql(client, LOGS, {"slug": "acme", "run": str(run.pk), **variables})
        assert error_codes(body) == ["invalid_argument"], body


def test_world_b_reads_no_logs_of_world_a(world_a, world_b, dag_version):
    run = FlowRunFactory(flow_version=dag_version)
    LogEntryFactory(flow_run=run, message="secret")
    outsider = login(world_b.users[Role.OWNER])
    for slug in ("acme", "globex"):
        data = ok(gql(outsider, LOGS, {"slug": slug, "run": str(run.pk)}))
        assert data["orchestration"] is None or data["orchestration"]["flowRun"] is None
