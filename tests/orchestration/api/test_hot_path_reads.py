"""An agent's hot requests read a bounded number of rows, however big its workspace.

The statements run on generic plans in production (the pool's connections prepare them), and a
generic plan estimates a workspace's rows as the average workspace's: for a big workspace among
many small ones it may read the whole workspace through its index where the run's rows were
wanted (it did, for the task-run batch and a run's end: docs/performance.md). Here one workspace
holds thousands of runs, task runs, states, log lines and idempotency records, 300 others one of
each, the statistics are fresh, and every statement is planned generically; each request of a
run's life, from creation to its end, is driven through the REST API as the agent sends it, and
what it read of every table is counted by PostgreSQL for the request's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Role, Workspace
from core.tenancy import rls_bypass
from orchestration.models import FlowRun, FlowRunState, FlowVersion, IdempotencyRecord, LogEntry, TaskRun, TaskRunState
from tests.conftest import build_world
from tests.orchestration.plans import analyze_as_owner

from .test_hot_path_statements import Hot

pytestmark = pytest.mark.django_db(transaction=True)

BIG, SMALL = 2000, 300
# Index entries plus rows read sequentially, all tables together, per request (3–12 today): the
# rows the request is about and the few small tables (the flow, the agent …), not the history.
BOUND = 30


def _history(world: Any, hot: Hot) -> None:
    """BIG finished runs in the hot workspace (two task runs, a state and two log lines each, an
    idempotency record), and SMALL workspaces with one of each."""
    now = timezone.now()
    with rls_bypass():
        version = FlowVersion.all_objects.get(flow_id=hot.flow["id"])
        small = Workspace.objects.bulk_create(Workspace(name=f"small {i}", slug=f"small-{i}") for i in range(SMALL))
        owners = [world.workspace] * BIG + small
        runs = FlowRun.all_objects.bulk_create(
            FlowRun(workspace=ws, flow_id=version.flow_id, flow_version=version, name=f"old-{i}",
                    state_type="COMPLETED", state_name="Completed", scheduled_start=now)
            for i, ws in enumerate(owners))
        tasks = TaskRun.all_objects.bulk_create(
            TaskRun(workspace=run.workspace, flow_run=run, task_key=key, state_type="COMPLETED")
            for run in runs for key in ("extract", "load"))
        FlowRunState.all_objects.bulk_create(
            FlowRunState(workspace=run.workspace, flow_run=run, type="COMPLETED", name="Completed") for run in runs)
        TaskRunState.all_objects.bulk_create(
            TaskRunState(workspace=t.workspace, task_run=t, type="COMPLETED", name="Completed") for t in tasks)
        LogEntry.all_objects.bulk_create(
            LogEntry(workspace=t.workspace, flow_run=t.flow_run, task_run=t, sequence=i, level=20, timestamp=now,
                     message="done") for i, t in enumerate(tasks))
        IdempotencyRecord.all_objects.bulk_create(
            IdempotencyRecord(workspace=ws, scope="flow-run-set-state", key=str(uuid.uuid4()), request_hash="0",
                              status_code=200, response={}) for ws in owners)
    analyze_as_owner("orchestration_flowrun", "orchestration_taskrun", "orchestration_flowrunstate",
                      "orchestration_taskrunstate", "orchestration_logentry", "orchestration_idempotencyrecord")


def _reads_by_table() -> dict[str, int]:
    """Index entries and sequentially read rows so far in this transaction, by table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(t.relname, c.relname), sum(pg_stat_get_xact_tuples_returned(c.oid)) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') GROUP BY 1")
        return {name: int(n) for name, n in cursor.fetchall() if n}


class Measured:
    def __init__(self, hot: Hot) -> None:
        self.hot = hot
        self.reads: dict[str, dict[str, int]] = {}

    def measure(self, label: str, send: Any) -> Any:
        """``send()`` (a request) in one transaction planned generically; record what it read."""
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            before = _reads_by_table()
            answer = send()
            after = _reads_by_table()
        self.reads[label] = {t: n - before.get(t, 0) for t, n in after.items() if n - before.get(t, 0)}
        return answer

    def get(self, label: str, url: str) -> Any:
        """GET as the developer."""
        response = self.measure(label, lambda: self.hot.developer.get(self.hot.world.url(url)))
        assert response.status_code == 200, (label, response.content)
        return response.json()

    def post(self, label: str, url: str, body: dict[str, Any]) -> Any:
        """POST as the agent (or the developer, for ``create``), with an Idempotency-Key."""
        client = self.hot.developer if label == "create" else self.hot.agent_client
        response = self.measure(label, lambda: client.post(self.hot.world.url(url), body, format="json",
                                                           HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())))
        assert response.status_code in (200, 201), (label, response.content)
        return response.json()


def _claimed_run() -> tuple[Measured, Hot, dict, str, int]:
    """A big workspace's history, then a new run created and claimed through the API, measured:
    the measurements, the run, its URL prefix and its attempt."""
    world = build_world("acme")
    hot = Hot(world)
    _history(world, hot)
    m = Measured(hot)
    run = m.post("create", "flow-runs/", {"flow": hot.flow["id"], "idempotency_key": str(uuid.uuid4())})
    [claimed] = m.post("claim", f"agents/{hot.agent['id']}/claim/", {"limit": 1})["results"]
    assert claimed["id"] == run["id"]
    return m, hot, run, f"flow-runs/{run['id']}/", claimed["attempt"]


def test_each_request_of_a_runs_life_reads_a_bounded_number_of_rows():
    m, hot, run, base, attempt = _claimed_run()
    m.post("running", base + "set-state/", {"state": {"type": "RUNNING"}, "attempt": attempt})
    m.post("heartbeat", base + "heartbeat/", {"attempt": attempt})
    reports = [{"task_key": key, "state": {"type": "RUNNING"}} for key in ("extract", "load")]
    m.post("task runs created", base + "task-runs/", {"attempt": attempt, "reports": reports})
    m.post("logs", base + "logs/", {"lines": [
        {"sequence": i, "level": "INFO", "timestamp": "2026-12-04T00:00:00Z", "message": f"line {i}",
         "task_key": "extract"} for i in range(20)]})
    reports = [{"task_key": key, "state": {"type": "COMPLETED"}} for key in ("extract", "load")]
    m.post("task runs finished", base + "task-runs/", {"attempt": attempt, "reports": reports})
    # the run ends with a task run still open (it is closed with the run, in the same statement)
    m.post("task run reopened", base + "task-runs/", {"attempt": attempt, "reports": [
        {"task_key": "report", "state": {"type": "RUNNING"}}]})
    ended = m.post("crashed", base + "set-state/", {"state": {"type": "CRASHED"}, "attempt": attempt})

    assert ended["status"] == "ACCEPT", ended
    totals = {label: sum(reads.values()) for label, reads in m.reads.items()}
    too_many = {label: m.reads[label] for label, total in totals.items() if total > BOUND}
    assert not too_many, too_many
    with rls_bypass():
        assert set(TaskRun.all_objects.filter(flow_run_id=run["id"]).values_list("state_type", flat=True)) == {
            "COMPLETED", "CRASHED"}


def test_what_a_person_reads_of_one_run_is_bounded_by_the_run():
    """The run page and its tabs (the run, its task runs, states and logs) and a filtered first
    page of runs read what they show, not the workspace's history."""
    m, hot, run, base, attempt = _claimed_run()
    m.post("running", base + "set-state/", {"state": {"type": "RUNNING"}, "attempt": attempt})
    m.post("task runs", base + "task-runs/", {"attempt": attempt, "reports": [
        {"task_key": key, "state": {"type": "COMPLETED"}} for key in ("extract", "load")]})
    m.post("logs", base + "logs/", {"lines": [
        {"sequence": i, "level": "INFO", "timestamp": "2026-12-04T00:00:00Z", "message": f"line {i}",
         "task_key": "extract"} for i in range(5)]})
    m.reads.clear()

    assert m.get("run", base)["id"] == run["id"]
    assert len(m.get("its task runs", base + "task-runs/")["results"]) == 2
    assert len(m.get("its states", base + "states/")["results"]) == 3
    assert len(m.get("its logs", base + "logs/")["results"]) == 5
    assert [r["id"] for r in m.get("running runs", "flow-runs/?state_type=RUNNING")["results"]] == [run["id"]]

    # the web app's runs page asks GraphQL for the same filtered first page
    from tests.accounts.test_graphql import gql, login, ok

    browser = login(hot.world.users[Role.DEVELOPER])
    query = """query { orchestration(workspace: "acme") {
      flowRuns(first: 20, filter: {stateTypes: ["RUNNING"]}) { edges { node { id } } } } }"""
    page = m.measure("runs page (GraphQL)", lambda: ok(gql(browser, query)))
    assert [e["node"]["id"] for e in page["orchestration"]["flowRuns"]["edges"]] == [run["id"]]

    # What grows with a workspace's history is counted: the orchestration tables. Django's own
    # (guardian resolving the grants' content types) and the workspace list (301 rows here, read
    # whole when that is cheapest) are not a workspace's history.
    totals = {label: sum(n for table, n in reads.items() if table.startswith("orchestration_"))
              for label, reads in m.reads.items()}
    too_many = {label: m.reads[label] for label, total in totals.items() if total > BOUND}
    assert not too_many, too_many
