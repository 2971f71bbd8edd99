"""The SQL an agent's hot requests cost (docs/performance.md, "Where the time goes", section 2):
create, claim and set-state driven through the REST API with API keys and an ``Idempotency-Key``,
as the SDK sends them, and their statements counted. A change that adds a statement to one of them
fails here; lower the bounds when a change removes one.

Each request's statements are split in two: row-level-security set-up (``set_config``) and key
authentication (``accounts_…``), which the tenancy and key code own, and the rest — the endpoint's
own — asserted exactly. The total (transaction control included) has a bound of its own. The
database is used for real (no test transaction around the request), so the request's transaction
is the outermost one, as in production."""

from __future__ import annotations

import copy
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import (
    Agent,
    ConcurrencySlot,
    FlowRun,
    FlowRunState,
    IdempotencyRecord,
    TaskRun,
    TaskRunState,
)
from tests.conftest import WorkspaceWorld, build_world
from tests.orchestration.api.conftest import METADATA, register

pytestmark = pytest.mark.django_db(transaction=True)

# Bounds on the whole request, RLS set-up and key authentication included (they shrink as those
# do; BEGIN and COMMIT are counted too).
TOTAL = {"create": 13, "claim": 18, "set-state": 13}


class Statements:
    """The statements one request sent, split into the endpoint's own and the rest."""

    def __init__(self, captured: CaptureQueriesContext) -> None:
        self.all = [q["sql"] for q in captured.captured_queries]
        self.own = [sql for sql in self.all if not _setup_or_auth(sql)]

    def own_kinds(self) -> list[str]:
        return [_kind(sql) for sql in self.own]

    def __repr__(self) -> str:
        return "\n" + "\n".join(sql[:200] for sql in self.all)


def _setup_or_auth(sql: str) -> bool:
    return "set_config(" in sql or '"accounts_' in sql or sql in ("BEGIN", "COMMIT")


def _kind(sql: str) -> str:
    """A statement named by what it does to which table, e.g. ``INSERT idempotencyrecord`` (a
    subquery in a SELECT's list, such as an EXISTS, does not name it)."""
    words = re.sub(r"\(SELECT [^()]*\)", "", sql).replace('"', "").split()
    table = next(w for w in words[1:] if w.startswith("orchestration_"))  # a WITH: its first CTE's
    return f"{words[0].upper()} {table.removeprefix('orchestration_').split('.')[0]}"


def _post(client: Any, url: str, body: dict[str, Any], key: str | None = None) -> tuple[Any, Statements]:
    with CaptureQueriesContext(connection) as captured:
        response = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))
    return response, Statements(captured)


class Hot:
    """A workspace with a registered flow (labels ``prod``, tag ``db`` on two tasks), a developer
    key that creates runs and an agent that claims and reports them."""

    def __init__(self, world: WorkspaceWorld) -> None:
        self.world = world
        self.developer = world.client(Role.DEVELOPER, key=True)
        self.flow = register(self.developer, world, copy.deepcopy(METADATA)).json()["flow"]
        self.agent_client = world.client(Role.AGENT)
        response = self.agent_client.post(world.url("agents/"), {"name": "a1", "type": "process",
                                                                 "labels": ["prod"]}, format="json")
        assert response.status_code == 201, response.content
        self.agent = response.json()

    def create(self) -> tuple[Any, Statements]:
        return _post(self.developer, self.world.url("flow-runs/"),
                     {"flow": self.flow["id"], "idempotency_key": str(uuid.uuid4())})

    def claim(self) -> tuple[Any, Statements]:
        return _post(self.agent_client, self.world.url(f"agents/{self.agent['id']}/claim/"), {"limit": 1})

    def set_state(self, run: dict[str, Any], state: str, key: str | None = None,
                  **extra: Any) -> tuple[Any, Statements]:
        return _post(self.agent_client, self.world.url(f"flow-runs/{run['id']}/set-state/"),
                     {"state": {"type": state}, "attempt": run["attempt"], **extra}, key)

    def claimed(self) -> dict[str, Any]:
        assert self.create()[0].status_code == 201
        response, _ = self.claim()
        [run] = response.json()["results"]
        return dict(run)

    def stamp_poll_ahead(self) -> None:
        """Make the agent's last claim-loop stamp recent (ahead of the database clock, so however
        slow this machine, it is under a second old when the claim reads it)."""
        with rls_bypass():
            Agent.objects.unscoped().filter(pk=self.agent["id"]).update(
                last_poll_at=F("last_heartbeat_at") + timedelta(minutes=1))


@pytest.fixture
def hot() -> Hot:
    return Hot(build_world("acme"))


def test_create_is_three_statements_of_its_own(hot):
    response, statements = hot.create()
    assert response.status_code == 201, response.content
    # The flow (access check), the run with the same idempotency key (a replay returns it) with the
    # version a new run uses in one statement, then the run and its first history row in one
    # statement (the database clock stamps them: no SELECT now(), no re-select, no savepoint).
    assert statements.own_kinds() == ["SELECT flow", "SELECT flowrun", "WITH flowrun"], statements
    assert '"orchestration_flowversion"' in statements.own[1], statements
    assert len(statements.all) <= TOTAL["create"], statements
    run = response.json()
    with rls_bypass():
        [state] = FlowRunState.objects.unscoped().filter(flow_run_id=run["id"])
        stored = FlowRun.objects.unscoped().get(pk=run["id"])
    assert (state.type, stored.state_type, stored.state_version) == ("SCHEDULED", "SCHEDULED", 1)
    assert state.timestamp == stored.state_timestamp == stored.created_at == stored.scheduled_start
    assert state.details == {"scheduled_start": stored.scheduled_start.isoformat()}
    assert run["scheduled_start"] == stored.scheduled_start.isoformat().replace("+00:00", "Z")


def test_claim_of_one_run_is_six_statements_of_its_own_and_seven_with_the_poll_stamp(hot):
    assert hot.create()[0].status_code == 201
    response, statements = hot.claim()
    assert response.status_code == 200, response.content
    [run] = response.json()["results"]
    # The agent (access check), the idempotency record, the due run's id locked with SKIP LOCKED,
    # the run read whole by that id (its flow's late-run policy, its version, whether it has task
    # runs), PENDING with the agent and the lease in one statement, the poll stamp (at most once a
    # second), the stored response. No flow-version or task-run query: the claim read them.
    assert statements.own_kinds() == [
        "SELECT agent", "INSERT idempotencyrecord", "SELECT flowrun", "SELECT flowrun", "WITH flowrunstate",
        "UPDATE agent", "UPDATE idempotencyrecord",
    ], statements
    # The whole run is read by primary key, not through the locking query as a subquery (whose
    # plan may join the flow's whole history first).
    ids, whole = [sql for sql, kind in zip(statements.own, statements.own_kinds(), strict=True)
                  if kind == "SELECT flowrun"]
    assert "SKIP LOCKED" in ids and "SKIP LOCKED" not in whole
    assert 'r."id" = \'' in whole and "ANY((SELECT" not in whole.replace(" ", "")  # one run: its key
    assert len(statements.all) <= TOTAL["claim"], statements
    assert (run["state_type"], run["agent"], run["task_runs"]) == ("PENDING", hot.agent["id"], [])
    assert run["version"]["storage"] == METADATA["storage"]
    with rls_bypass():
        stored = FlowRun.objects.unscoped().get(pk=run["id"])
        agent = Agent.objects.unscoped().get(pk=hot.agent["id"])
    assert run["lease_expires_at"] == stored.lease_expires_at.isoformat().replace("+00:00", "Z")
    assert stored.lease_expires_at - stored.state_timestamp == timedelta(seconds=60)
    assert agent.last_poll_at is not None

    # within a second of the last stamp the claim does not stamp again
    hot.stamp_poll_ahead()
    assert hot.create()[0].status_code == 201
    response, statements = hot.claim()
    assert len(response.json()["results"]) == 1
    assert "UPDATE agent" not in statements.own_kinds() and len(statements.own) == 6, statements


def test_an_empty_claim_is_five_statements_of_its_own(hot):
    response, statements = hot.claim()
    assert response.status_code == 200 and response.json()["results"] == []
    # Without a due run there is no database clock to compare the stamp with: the conditional
    # UPDATE decides (it stamps at most once a second).
    assert statements.own_kinds() == [
        "SELECT agent", "INSERT idempotencyrecord", "SELECT flowrun", "UPDATE agent", "UPDATE idempotencyrecord",
    ], statements


def test_a_claimed_run_with_task_runs_comes_with_them(hot):
    run = hot.claimed()
    assert hot.set_state(run, "RUNNING")[0].status_code == 200
    report = hot.agent_client.post(hot.world.url(f"flow-runs/{run['id']}/task-runs/"), {
        "attempt": run["attempt"], "reports": [{"task_key": "extract", "state": {"type": "RUNNING"}}]}, format="json")
    assert report.status_code == 200, report.content
    # the agent's process crashed: the run is retried (SCHEDULED, its task run ended CRASHED)
    assert hot.set_state(run, "CRASHED")[0].status_code == 200
    response, statements = hot.claim()
    [again] = response.json()["results"]
    assert again["id"] == run["id"] and again["attempt"] == 2
    assert [(t["task_key"], t["state_type"]) for t in again["task_runs"]] == [("extract", "CRASHED")]
    assert statements.own_kinds().count("SELECT taskrun") == 1, statements


@pytest.mark.parametrize("state", ["RUNNING", "COMPLETED"])
def test_set_state_is_four_statements_of_its_own(hot, state):
    run = hot.claimed()
    if state == "COMPLETED":
        assert hot.set_state(run, "RUNNING")[0].status_code == 200
    response, statements = hot.set_state(run, state)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ACCEPT" and response.json()["state"]["type"] == state
    # The idempotency record, the run read and locked once (it is also the access check: 404 for
    # another workspace's), the history row + the run's new state (+ for an end: its slots
    # released and its open task runs ended) in one statement, the stored response.
    assert statements.own_kinds() == [
        "INSERT idempotencyrecord", "SELECT flowrun", "WITH flowrunstate", "UPDATE idempotencyrecord"], statements
    assert len(statements.all) <= TOTAL["set-state"], statements


def test_an_end_releases_slots_and_ends_open_task_runs_in_the_same_statement(hot):
    assert hot.developer.put(hot.world.url("concurrency-limits/"), {"tag": "db", "limit": 5},
                             format="json").status_code == 200
    run = hot.claimed()
    assert hot.set_state(run, "RUNNING")[0].status_code == 200
    report = hot.agent_client.post(hot.world.url(f"flow-runs/{run['id']}/task-runs/"), {
        "attempt": run["attempt"], "reports": [{"task_key": "extract", "state": {"type": "RUNNING"}},
                                               {"task_key": "load", "state": {"type": "RUNNING"}}]}, format="json")
    assert [r["status"] for r in report.json()["results"]] == ["ACCEPT", "ACCEPT"]
    with rls_bypass():
        assert ConcurrencySlot.objects.unscoped().filter(flow_run_id=run["id"]).count() == 2
    response, statements = hot.set_state(run, "COMPLETED")
    assert response.json()["status"] == "ACCEPT"
    assert statements.own_kinds() == [
        "INSERT idempotencyrecord", "SELECT flowrun", "WITH flowrunstate", "UPDATE idempotencyrecord"], statements
    with rls_bypass():
        assert not ConcurrencySlot.objects.unscoped().filter(flow_run_id=run["id"]).exists()
        ended = TaskRun.objects.unscoped().filter(flow_run_id=run["id"])
        assert {(t.task_key, t.state_type, t.end_time is not None) for t in ended} == {
            ("extract", "CANCELLED", True), ("load", "CANCELLED", True)}
        assert TaskRunState.objects.unscoped().filter(task_run__flow_run_id=run["id"], type="CANCELLED").count() == 2


def test_a_replayed_set_state_is_two_statements_of_its_own_and_changes_nothing(hot):
    run = hot.claimed()
    key = str(uuid.uuid4())
    first, _ = hot.set_state(run, "RUNNING", key)
    replay, statements = hot.set_state(run, "RUNNING", key)
    assert (replay.status_code, replay.json()) == (first.status_code, first.json())
    # The record's INSERT finds the key, one SELECT reads the stored response.
    assert statements.own_kinds() == ["INSERT idempotencyrecord", "SELECT idempotencyrecord"], statements
    with rls_bypass():
        assert FlowRunState.objects.unscoped().filter(flow_run_id=run["id"], type="RUNNING").count() == 1


def test_a_refused_set_state_stores_no_response_and_a_retry_computes_afresh(hot):
    run = hot.claimed()
    key = str(uuid.uuid4())
    for _ in range(2):  # the same key and body again: not a replay, since nothing was stored
        response, _ = hot.set_state(run, "RUNNING", key, expected_version=99)
        assert response.status_code == 409 and response.json()["error"]["code"] == "stale_state_version"
    with rls_bypass():
        assert not IdempotencyRecord.objects.unscoped().filter(key=key).exists()
        assert FlowRun.objects.unscoped().get(pk=run["id"]).state_type == "PENDING"
    # nothing was stored under the key: another body with it is a first call, not a reuse
    response, _ = hot.set_state(run, "RUNNING", key, expected_version=run["state_version"])
    assert response.status_code == 200 and response.json()["status"] == "ACCEPT"


def test_set_state_on_another_workspaces_run_or_no_run_is_404_and_stores_nothing(hot):
    other = build_world("globex")
    theirs = Hot(other).claimed()
    for run_id in (theirs["id"], str(uuid.uuid4()), "not-a-uuid"):
        key = str(uuid.uuid4())
        response, _ = hot.set_state({"id": run_id, "attempt": 1}, "RUNNING", key)
        assert response.status_code == 404, response.content
        with rls_bypass():
            assert not IdempotencyRecord.objects.unscoped().filter(key=key).exists()
    with rls_bypass():
        assert FlowRun.objects.unscoped().get(pk=theirs["id"]).state_type == "PENDING"


def test_a_heartbeat_on_another_workspaces_run_or_no_run_is_404_and_stores_nothing(hot):
    other = build_world("globex")
    theirs = Hot(other).claimed()
    for run_id in (theirs["id"], str(uuid.uuid4()), "not-a-uuid"):
        key = str(uuid.uuid4())
        response, _ = _post(hot.agent_client, hot.world.url(f"flow-runs/{run_id}/heartbeat/"), {"attempt": 1}, key)
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "not_found"
        with rls_bypass():
            assert not IdempotencyRecord.objects.unscoped().filter(key=key).exists()
    with rls_bypass():
        stored = FlowRun.objects.unscoped().get(pk=theirs["id"])
    assert (stored.state_type, stored.lease_expires_at.isoformat().replace("+00:00", "Z")) == (
        "PENDING", theirs["lease_expires_at"])


def test_a_task_run_batch_on_another_workspaces_run_or_no_run_is_404_and_stores_nothing(hot):
    other = build_world("globex")
    theirs = Hot(other).claimed()
    for run_id in (theirs["id"], str(uuid.uuid4()), "not-a-uuid"):
        key = str(uuid.uuid4())
        response, _ = _post(hot.agent_client, hot.world.url(f"flow-runs/{run_id}/task-runs/"), {
            "attempt": 1, "reports": [{"task_key": "extract", "state": {"type": "RUNNING"}}]}, key)
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "not_found"
        with rls_bypass():
            assert not IdempotencyRecord.objects.unscoped().filter(key=key).exists()
    with rls_bypass():
        assert not TaskRun.objects.unscoped().filter(flow_run_id=theirs["id"]).exists()


def test_a_heartbeat_a_task_run_batch_and_a_log_batch_take_no_savepoint(hot):
    """Inside an idempotent request any error rolls the whole request back, so the services need
    no savepoint of their own: a pair would be two more round trips on every report (called
    directly, they keep it: tests/orchestration/agents/test_leases.py, test_task_runs.py)."""
    run = hot.claimed()
    assert hot.set_state(run, "RUNNING")[0].status_code == 200
    base = f"flow-runs/{run['id']}/"
    response, beat = _post(hot.agent_client, hot.world.url(base + "heartbeat/"), {"attempt": run["attempt"]})
    assert response.status_code == 200, response.content
    response, logs = _post(hot.agent_client, hot.world.url(base + "logs/"), {"lines": [
        {"sequence": i, "level": "INFO", "timestamp": "2026-12-04T00:00:00Z", "message": f"line {i}",
         "task_key": "extract"} for i in range(3)]})
    assert response.status_code == 200 and response.json() == {"count": 3}, response.content
    response, tasks = _post(hot.agent_client, hot.world.url(base + "task-runs/"), {
        "attempt": run["attempt"], "reports": [{"task_key": "extract", "state": {"type": "RUNNING"}}]})
    assert response.status_code == 200 and response.json()["results"][0]["status"] == "ACCEPT", response.content
    assert not [sql for sql in beat.all + logs.all + tasks.all if "SAVEPOINT" in sql], beat.all + logs.all + tasks.all
    # The batch reads the database clock with the run's FOR SHARE lock, not in a statement of its own.
    assert not [sql for sql in tasks.all if sql.strip().lower() == "select now()"], tasks.all
    # the idempotency record, the lease extended (the UPDATE is the access check too: no read of
    # the run first), the stored reply; the log batch: the run's access check, the record, the
    # task runs its lines name, the lines, the stored reply
    assert beat.own_kinds() == ["INSERT idempotencyrecord", "UPDATE flowrun", "UPDATE idempotencyrecord"], beat
    assert logs.own_kinds() == ["SELECT flowrun", "INSERT idempotencyrecord", "SELECT taskrun", "INSERT logentry",
                                "UPDATE idempotencyrecord"], logs
    # the idempotency record, the run locked FOR SHARE with the clock and its version's tasks (the
    # access check too: no read of the run first), the task run locked (created on first sight: the
    # row it inserts is its own, not read back), the limit on its tag (``db``: the concurrency rule),
    # its history row and new state in one statement, the stored reply
    assert tasks.own_kinds() == ["INSERT idempotencyrecord", "SELECT flowrun", "SELECT taskrun",
                                 "INSERT taskrun", "SELECT concurrencylimit", "WITH taskrunstate",
                                 "UPDATE idempotencyrecord"], tasks
    # a second report on the same task run finds it: no insert
    response, again = _post(hot.agent_client, hot.world.url(base + "task-runs/"), {
        "attempt": run["attempt"], "reports": [{"task_key": "extract", "state": {"type": "COMPLETED"}}]})
    assert response.status_code == 200 and response.json()["results"][0]["status"] == "ACCEPT", response.content
    assert again.own_kinds() == ["INSERT idempotencyrecord", "SELECT flowrun", "SELECT taskrun",
                                 "SELECT concurrencylimit", "WITH taskrunstate", "UPDATE idempotencyrecord"], again
