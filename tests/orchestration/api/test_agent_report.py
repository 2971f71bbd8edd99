"""The combined agent report (``flow-runs/{id}/report/``, docs/api.md): a heartbeat, task-run states,
log lines and a flow state in one request, applied in that order in one transaction, with the
status codes of set-state, idempotent, refused whole on any error, and only for agent roles of the
run's own workspace."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowRun, FlowRunState, IdempotencyRecord, LogEntry, StateType, TaskRun, TaskRunState
from tests.orchestration.api.conftest import assert_error, register

pytestmark = pytest.mark.django_db

T0 = "2026-01-01T00:00:00Z"


@pytest.fixture
def claimed(world_a, metadata):
    """A registered flow's run, claimed by an agent (PENDING, attempt 1): (agent client, run url, run id)."""
    developer = world_a.client(Role.DEVELOPER)
    flow = register(developer, world_a, metadata).json()["flow"]
    run = developer.post(world_a.url("flow-runs/"), {"flow": flow["id"]}, format="json").json()
    agent_client = world_a.client(Role.AGENT)
    agent = agent_client.post(world_a.url("agents/"), {"name": "a1", "type": "process", "labels": ["prod"]},
                              format="json").json()
    [row] = agent_client.post(world_a.url(f"agents/{agent['id']}/claim/"), {"limit": 1, "lease_seconds": 30},
                              format="json").json()["results"]
    assert row["id"] == run["id"] and row["attempt"] == 1
    return agent_client, world_a.url(f"flow-runs/{run['id']}/"), run["id"]


def _line(sequence, message, **extra):
    return {"sequence": sequence, "level": 20, "timestamp": T0, "message": message, **extra}


def _snapshot(run_id):
    """Everything a report can change, to prove a refused one changed nothing."""
    with rls_bypass():
        run = FlowRun.all_objects.get(pk=run_id)
        return {
            "run": (run.state_type, run.state_version, run.lease_expires_at, run.attempt),
            "states": list(FlowRunState.all_objects.filter(flow_run_id=run_id).values_list("type", flat=True)),
            "task_states": TaskRunState.all_objects.filter(task_run__flow_run_id=run_id).count(),
            "task_runs": TaskRun.all_objects.filter(flow_run_id=run_id).count(),
            "logs": LogEntry.all_objects.filter(flow_run_id=run_id).count(),
        }


def test_running_with_the_first_heartbeat_then_the_final_state_with_the_last_task_states_and_logs(claimed):
    agent_client, url, run_id = claimed
    with rls_bypass():
        claimed_lease = FlowRun.all_objects.get(pk=run_id).lease_expires_at
    start = agent_client.post(url + "report/", {"attempt": 1, "heartbeat": {"lease_seconds": 120},
                                                "state": {"type": "RUNNING"}}, format="json")
    assert start.status_code == 200, start.content
    body = start.json()
    assert set(body) == {"heartbeat", "state"}
    assert body["state"]["status"] == "ACCEPT" and body["state"]["state"]["type"] == "RUNNING"
    assert body["heartbeat"]["cancellation_requested"] is False and body["heartbeat"]["attempt"] == 1
    with rls_bypass():
        run = FlowRun.all_objects.get(pk=run_id)
    assert run.state_type == StateType.RUNNING and run.lease_expires_at > claimed_lease  # 120 s > the claim's 30 s

    end = agent_client.post(url + "report/", {
        "attempt": 1,
        "task_runs": [{"task_key": "extract", "state": {"type": "RUNNING"}},
                      {"task_key": "extract", "state": {"type": "COMPLETED", "name": "Success", "result_ref": "/r/x"}},
                      {"task_key": "transform", "map_index": 0, "state": {"type": "COMPLETED"}}],
        "logs": [_line(1, "hello"), _line(2, "from extract", task_key="extract", map_index=-1)],
        "state": {"type": "COMPLETED", "name": "Success"},
    }, format="json")
    assert end.status_code == 200, end.content
    body = end.json()
    assert [r["status"] for r in body["task_runs"]["results"]] == ["ACCEPT", "ACCEPT", "ACCEPT"]
    assert body["logs"] == {"count": 2}
    assert body["state"]["status"] == "ACCEPT" and body["state"]["state"]["type"] == "COMPLETED"
    with rls_bypass():
        assert FlowRun.all_objects.get(pk=run_id).state_type == StateType.COMPLETED
        extract = TaskRun.all_objects.get(flow_run_id=run_id, task_key="extract")
        assert extract.state_type == StateType.COMPLETED and extract.result_ref == "/r/x"
        # The line names a task run created by the same report: task runs go before logs.
        assert LogEntry.all_objects.get(flow_run_id=run_id, sequence=2).task_run_id == extract.pk


@pytest.mark.parametrize("part", ["heartbeat", "task_runs", "logs", "state"])
def test_each_part_alone(claimed, part):
    agent_client, url, run_id = claimed
    body = {
        "heartbeat": {"attempt": 1, "heartbeat": {}},
        "task_runs": {"attempt": 1, "task_runs": [{"task_key": "extract", "state": {"type": "PENDING"}}]},
        "logs": {"attempt": 1, "logs": [_line(1, "alone")]},
        "state": {"attempt": 1, "state": {"type": "RUNNING"}},
    }[part]
    response = agent_client.post(url + "report/", body, format="json")
    assert response.status_code == 200, response.content
    assert set(response.json()) == {part}
    after = _snapshot(run_id)
    assert after["task_runs"] == (1 if part == "task_runs" else 0)
    assert after["logs"] == (1 if part == "logs" else 0)
    assert after["run"][0] == ("RUNNING" if part == "state" else "PENDING")
    if part == "heartbeat":
        assert response.json()["heartbeat"]["lease_expires_at"]


def test_the_parts_apply_in_order_heartbeat_task_runs_logs_state(claimed):
    """The final state is applied last: the task runs it closes and the lines it follows are there."""
    agent_client, url, run_id = claimed
    agent_client.post(url + "report/", {"attempt": 1, "state": {"type": "RUNNING"}}, format="json")
    response = agent_client.post(url + "report/", {
        "attempt": 1, "heartbeat": {"lease_seconds": 60},
        "task_runs": [{"task_key": "load", "state": {"type": "RUNNING"}}],
        "logs": [_line(5, "loading", task_key="load")],
        "state": {"type": "FAILED", "message": "load failed"},
    }, format="json")
    assert response.status_code == 200, response.content
    with rls_bypass():
        run = FlowRun.all_objects.get(pk=run_id)
        load = TaskRun.all_objects.get(flow_run_id=run_id, task_key="load")
        line = LogEntry.all_objects.get(flow_run_id=run_id, sequence=5)
        final = FlowRunState.all_objects.filter(flow_run_id=run_id).order_by("-id").first()
        running = TaskRunState.all_objects.filter(task_run=load, type="RUNNING").get()
    assert run.state_type == StateType.FAILED and final.type == "FAILED"
    assert line.task_run_id == load.pk  # logs after task runs
    assert running.timestamp <= final.timestamp  # the task state before the flow's final state
    # The flow's end closed the task run left RUNNING (the engine's rule), so its state came first.
    assert load.state_type != StateType.RUNNING


def test_a_rejected_state_is_409_with_the_whole_reply_and_the_other_parts_stay(claimed, world_a):
    agent_client, url, run_id = claimed
    agent_client.post(url + "report/", {"attempt": 1, "state": {"type": "RUNNING"}}, format="json")
    world_a.client(Role.DEVELOPER).post(url + "cancel/", {}, format="json")  # CANCELLING
    response = agent_client.post(url + "report/", {
        "attempt": 1, "task_runs": [{"task_key": "extract", "state": {"type": "COMPLETED"}}],
        "logs": [_line(1, "done")], "state": {"type": "COMPLETED"},
    }, format="json")
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["state"]["status"] == "REJECT" and body["state"]["state"]["type"] == "CANCELLING"
    assert body["error"]["code"] == "state_rejected"
    assert body["task_runs"]["results"][0]["status"] == "ACCEPT" and body["logs"] == {"count": 1}
    after = _snapshot(run_id)
    assert after["run"][0] == "CANCELLING" and after["task_runs"] == 1 and after["logs"] == 1


def test_a_stale_attempt_aborts_and_changes_nothing(claimed):
    agent_client, url, run_id = claimed
    before = _snapshot(run_id)
    response = agent_client.post(url + "report/", {"attempt": 2, "state": {"type": "RUNNING"}}, format="json")
    assert response.status_code == 409
    assert response.json()["state"]["status"] == "ABORT" and response.json()["error"]["code"] == "state_aborted"
    # With a heartbeat or task runs, the stale attempt is their 409 and nothing at all is written.
    for body in ({"attempt": 2, "heartbeat": {}, "logs": [_line(1, "x")], "state": {"type": "RUNNING"}},
                 {"attempt": 2, "logs": [_line(1, "x")],
                  "task_runs": [{"task_key": "extract", "state": {"type": "RUNNING"}}]}):
        assert_error(agent_client.post(url + "report/", body, format="json"), 409, "stale_attempt")
    assert _snapshot(run_id) == before


def test_wait_is_200_with_a_retry_hint_and_the_run_stays_pending(claimed, world_a):
    agent_client, url, run_id = claimed
    with rls_bypass():
        run = FlowRun.all_objects.select_related("flow").get(pk=run_id)
        run.flow.concurrency_limit = 1
        run.flow.save(update_fields=["concurrency_limit"])
    developer = world_a.client(Role.DEVELOPER)
    other = developer.post(world_a.url("flow-runs/"), {"flow": str(run.flow_id)}, format="json").json()
    with rls_bypass():  # the same agent claims the second run
        agent_id = str(FlowRun.all_objects.get(pk=run_id).agent_id)
    [second] = agent_client.post(world_a.url(f"agents/{agent_id}/claim/"), {"limit": 1},
                                 format="json").json()["results"]
    assert second["id"] == other["id"]
    assert agent_client.post(url + "report/", {"attempt": 1, "state": {"type": "RUNNING"}},
                             format="json").json()["state"]["status"] == "ACCEPT"
    other_url = world_a.url(f"flow-runs/{other['id']}/")
    response = agent_client.post(other_url + "report/", {
        "attempt": 1, "heartbeat": {}, "logs": [_line(1, "waiting")], "state": {"type": "RUNNING"}}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"]["status"] == "WAIT" and body["state"]["retry_after_seconds"] >= 1
    assert "error" not in body and body["heartbeat"]["state_type"] == "PENDING" and body["logs"] == {"count": 1}
    assert _snapshot(other["id"])["run"][0] == "PENDING"


def test_the_heartbeat_part_says_when_cancellation_was_requested(claimed, world_a):
    agent_client, url, _run_id = claimed
    agent_client.post(url + "report/", {"attempt": 1, "heartbeat": {}, "state": {"type": "RUNNING"}}, format="json")
    world_a.client(Role.DEVELOPER).post(url + "cancel/", {}, format="json")
    reply = agent_client.post(url + "report/", {"attempt": 1, "heartbeat": {}, "logs": [_line(1, "x")]},
                              format="json").json()
    assert reply["heartbeat"]["cancellation_requested"] is True


def test_a_replay_with_the_same_key_returns_the_stored_reply_and_applies_nothing_again(claimed):
    agent_client, url, run_id = claimed
    body = {"attempt": 1, "heartbeat": {}, "state": {"type": "RUNNING"},
            "task_runs": [{"task_key": "extract", "state": {"type": "RUNNING"}}], "logs": [_line(1, "once")]}
    first = agent_client.post(url + "report/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    replay = agent_client.post(url + "report/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    assert first.status_code == replay.status_code == 200 and first.json() == replay.json()
    after = _snapshot(run_id)
    assert after["task_states"] == 1 and after["logs"] == 1 and after["states"].count("RUNNING") == 1
    # A replayed 409 is the stored 409.
    final = {"attempt": 1, "state": {"type": "SCHEDULED"}}
    rejected = agent_client.post(url + "report/", final, format="json", HTTP_IDEMPOTENCY_KEY="r-2")
    again = agent_client.post(url + "report/", final, format="json", HTTP_IDEMPOTENCY_KEY="r-2")
    assert rejected.status_code == again.status_code and rejected.json() == again.json()
    # The same key with another body is refused.
    assert_error(agent_client.post(url + "report/", {**body, "logs": [_line(2, "other")]}, format="json",
                                   HTTP_IDEMPOTENCY_KEY="r-1"), 422, "idempotency_key_reused")
    with rls_bypass():
        assert IdempotencyRecord.all_objects.filter(scope=f"flow_run:{run_id}:report").count() == 2


BAD_REPORTS = [
    ({"heartbeat": {}}, "attempt"),
    ({"attempt": 1}, "non_field_errors"),
    ({"attempt": 1, "heartbeat": {"lease_seconds": 5}}, "heartbeat"),
    ({"attempt": 1, "heartbeat": {"lease": 60}}, "heartbeat"),
    ({"attempt": 1, "task_runs": []}, "task_runs"),
    ({"attempt": 1, "task_runs": [{"task_key": "x", "state": {"type": "DONE"}}]}, "task_runs"),
    ({"attempt": 1, "logs": [{"sequence": -1, "level": 20, "timestamp": T0, "message": "m"}]}, "logs"),
    ({"attempt": 1, "logs": [_line(1, "m", task_run_id="00000000-0000-0000-0000-000000000001")]}, "logs"),
    ({"attempt": 1, "state": {"type": "DONE"}}, "state"),
    ({"attempt": 1, "logs": [_line(1, "m")], "expected_version": 3}, "expected_version"),
    ({"attempt": 1, "state": {"type": "RUNNING"}, "agent": "me"}, "agent"),
]


@pytest.mark.parametrize(("body", "field"), BAD_REPORTS)
def test_invalid_input_is_a_400_naming_the_part_and_field_and_writes_nothing(claimed, body, field):
    agent_client, url, run_id = claimed
    before = _snapshot(run_id)
    # A valid heartbeat and task runs ride along: they must not be applied either.
    full = {"heartbeat": {"lease_seconds": 600},
            "task_runs": [{"task_key": "extract", "state": {"type": "RUNNING"}}], **body}
    for attempt_body in (body, full):
        if field in ("non_field_errors",) and attempt_body is full:
            continue
        error = assert_error(agent_client.post(url + "report/", attempt_body, format="json"), 400)
        assert field in error["details"], error
        assert error["message"].startswith(field) or field == "non_field_errors", error
    assert _snapshot(run_id) == before


def test_a_part_failing_in_its_service_leaves_nothing_half_written(claimed):
    """The task runs and heartbeat are applied in the transaction before the logs fail: all roll back."""
    agent_client, url, run_id = claimed
    before = _snapshot(run_id)
    response = agent_client.post(url + "report/", {
        "attempt": 1, "heartbeat": {"lease_seconds": 600},
        "task_runs": [{"task_key": "extract", "state": {"type": "RUNNING"}}],
        "logs": [_line(1, "ok"), _line(2, "bad", task_run_id="00000000-0000-0000-0000-000000000002")],
        "state": {"type": "RUNNING"},
    }, format="json", HTTP_IDEMPOTENCY_KEY="half-1")
    error = assert_error(response, 400)
    assert error["message"].startswith("logs: ") and "logs" in error["details"], error
    assert _snapshot(run_id) == before
    with rls_bypass():  # the key is free again: a corrected report may use it
        assert not IdempotencyRecord.all_objects.filter(key="half-1").exists()


def test_a_viewer_or_developer_without_agent_rights_is_refused(claimed, world_a):
    _agent_client, url, run_id = claimed
    before = _snapshot(run_id)
    body = {"attempt": 1, "heartbeat": {}, "logs": [_line(1, "x")], "state": {"type": "RUNNING"}}
    for client in (world_a.client(Role.VIEWER, key=True), world_a.client(Role.VIEWER)):
        assert_error(client.post(url + "report/", body, format="json"), 403, "permission_denied")
    assert _snapshot(run_id) == before


def test_another_workspaces_run_is_404_and_nothing_changes(claimed, world_b):
    _agent_client, url, run_id = claimed
    before = _snapshot(run_id)
    intruder = world_b.client(Role.AGENT)
    body = {"attempt": 1, "heartbeat": {}, "task_runs": [{"task_key": "extract", "state": {"type": "RUNNING"}}],
            "logs": [_line(1, "x")], "state": {"type": "CANCELLED"}}
    # Through the intruder's own workspace URL with the other workspace's run id…
    assert_error(intruder.post(world_b.url(f"flow-runs/{run_id}/report/"), body, format="json"), 404, "not_found")
    # …and through the victim's URL with the intruder's key.
    assert_error(intruder.post(url + "report/", body, format="json"), 404)
    assert _snapshot(run_id) == before


def test_one_report_costs_fewer_statements_than_the_separate_requests(claimed, world_a):
    """The final report (task states + logs + state) against the three requests it replaces."""
    agent_client, url, run_id = claimed
    agent_client.post(url + "report/", {"attempt": 1, "state": {"type": "RUNNING"}}, format="json")
    tasks = [{"task_key": "extract", "state": {"type": "COMPLETED"}}]
    with CaptureQueriesContext(connection) as separate:
        agent_client.post(url + "task-runs/", {"attempt": 1, "reports": tasks}, format="json",
                          HTTP_IDEMPOTENCY_KEY="s-1")
        agent_client.post(url + "logs/", {"lines": [_line(1, "a")]}, format="json", HTTP_IDEMPOTENCY_KEY="s-2")
        agent_client.post(url + "heartbeat/", {"attempt": 1}, format="json", HTTP_IDEMPOTENCY_KEY="s-3")
    tasks = [{"task_key": "transform", "state": {"type": "COMPLETED"}}]
    with CaptureQueriesContext(connection) as combined:
        response = agent_client.post(url + "report/", {
            "attempt": 1, "heartbeat": {}, "task_runs": tasks, "logs": [_line(2, "b")],
            "state": {"type": "COMPLETED"}}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 200, response.content
    # Three requests' worth of authentication, RLS set-up and idempotency paid once, and the flow
    # state on top (about 30 statements against 42 when this was written).
    assert len(combined.captured_queries) < len(separate.captured_queries) - 6, (
        len(combined.captured_queries), len(separate.captured_queries))
    assert len(combined.captured_queries) <= 36, [q["sql"][:120] for q in combined.captured_queries]
