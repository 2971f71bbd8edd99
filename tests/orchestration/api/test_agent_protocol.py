"""The agent protocol over REST, in the order an agent makes its calls (docs/agent-protocol.md):
register → heartbeat → claim → PENDING→RUNNING with the attempt → flow-run heartbeat → task-run
batches → log batches → final state; plus stale attempts, idempotency keys and roles."""

from __future__ import annotations

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.models import FlowRun, FlowRunState, LogEntry, StateType, TaskRun
from tests.orchestration.api.conftest import assert_error, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def registered(world_a, metadata):
    """A flow registered by a developer and one quick run of it, due now."""
    developer = world_a.client(Role.DEVELOPER)
    flow = register(developer, world_a, metadata).json()["flow"]
    run = developer.post(world_a.url("flow-runs/"), {"flow": flow["id"], "parameters": {"day": "monday"}},
                         format="json")
    assert run.status_code == 201, run.content
    return flow, run.json()


def _agent(world, client, labels=("prod",)):
    response = client.post(world.url("agents/"), {"name": "a1", "type": "process", "labels": list(labels),
                                                  "version": "1.0"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _claimed(world, registered):
    agent_client = world.client(Role.AGENT)
    agent = _agent(world, agent_client)
    claim = agent_client.post(world.url(f"agents/{agent['id']}/claim/"), {"limit": 5, "lease_seconds": 60},
                              format="json")
    assert claim.status_code == 200, claim.content
    return agent_client, agent, claim.json()["results"]


def test_full_protocol_from_register_to_completed(world_a, registered):
    flow, run = registered
    agent_client = world_a.client(Role.AGENT)
    # register and heartbeat
    agent = _agent(world_a, agent_client)
    assert agent["status"] in ("healthy", "unhealthy", "offline")
    beat = agent_client.post(world_a.url(f"agents/{agent['id']}/heartbeat/"), {"polled": True}, format="json")
    assert beat.status_code == 200, beat.content
    # claim: the run comes with everything needed to start it
    claim = agent_client.post(world_a.url(f"agents/{agent['id']}/claim/"), {"limit": 1}, format="json").json()
    [claimed] = claim["results"]
    assert claimed["id"] == run["id"] and claimed["state_type"] == "PENDING"
    assert claimed["version"]["storage"] == {"type": "module", "module": "flows.etl"}
    assert claimed["parameters"]["day"] == "monday"
    # PENDING → RUNNING with the attempt
    url = world_a.url(f"flow-runs/{run['id']}/")
    running = agent_client.post(url + "set-state/", {"state": {"type": "RUNNING"}, "attempt": claimed["attempt"]},
                                format="json")
    assert running.status_code == 200, running.content
    assert running.json()["status"] == "ACCEPT" and running.json()["state"]["type"] == "RUNNING"
    # flow-run heartbeat: the reply says whether cancellation was requested
    hb = agent_client.post(url + "heartbeat/", {"attempt": claimed["attempt"]}, format="json")
    assert hb.status_code == 200 and hb.json()["cancellation_requested"] is False
    # task-run states in a batch
    batch = agent_client.post(url + "task-runs/", {"attempt": claimed["attempt"], "reports": [
        {"task_key": "extract", "state": {"type": "RUNNING"}},
        {"task_key": "extract", "state": {"type": "COMPLETED", "name": "Success", "result_ref": "s3://b/k"}},
    ]}, format="json")
    assert batch.status_code == 200, batch.content
    assert [r["status"] for r in batch.json()["results"]] == ["ACCEPT", "ACCEPT"]
    # log lines in a batch
    logs = agent_client.post(url + "logs/", {"lines": [
        {"sequence": 1, "level": 20, "timestamp": "2026-01-01T00:00:00Z", "message": "hello"},
        {"sequence": 2, "level": "ERROR", "timestamp": "2026-01-01T00:00:01Z", "message": "oops", "logger": "etl",
         "task_key": "extract", "map_index": -1},
    ]}, format="json")
    assert logs.status_code == 200 and logs.json()["count"] == 2
    # final state
    done = agent_client.post(url + "set-state/", {"state": {"type": "COMPLETED", "name": "Success"},
                                                  "attempt": claimed["attempt"]}, format="json")
    assert done.json()["status"] == "ACCEPT"
    # the developer sees the run with its task runs, state history and logs
    developer = world_a.client(Role.DEVELOPER)
    detail = developer.get(url).json()
    assert detail["state_type"] == "COMPLETED"
    assert [t["task_key"] for t in detail["task_runs"]] == ["extract"]
    assert detail["task_runs"][0]["result_ref"] == "s3://b/k"
    assert [s["type"] for s in detail["states"]][-3:] == ["PENDING", "RUNNING", "COMPLETED"]
    listed = developer.get(url + "logs/", {"level_gte": 30}).json()
    assert [line["message"] for line in listed["results"]] == ["oops"]
    assert listed["results"][0]["task_run"] == detail["task_runs"][0]["id"]
    assert developer.get(url + "task-runs/").json()["results"][0]["state_type"] == "COMPLETED"


def test_a_stale_attempt_gets_409_and_changes_nothing(world_a, registered):
    _flow, run = registered
    agent_client, _agent_row, [claimed] = _claimed(world_a, registered)
    url = world_a.url(f"flow-runs/{run['id']}/")
    response = agent_client.post(url + "set-state/", {"state": {"type": "RUNNING"}, "attempt": claimed["attempt"] + 1},
                                 format="json")
    assert response.status_code == 409
    body = response.json()
    # ABORT: this attempt is over, the agent stops the run
    assert body["status"] == "ABORT" and body["state"]["type"] == "PENDING"
    assert body["error"]["code"] == "state_aborted"
    hb = agent_client.post(url + "heartbeat/", {"attempt": claimed["attempt"] + 1}, format="json")
    assert hb.status_code == 409
    with rls_bypass():
        assert FlowRun.all_objects.get(pk=run["id"]).state_type == StateType.PENDING


def test_a_stale_expected_version_gets_409_with_the_current_state(world_a, registered):
    _flow, run = registered
    agent_client, _agent_row, [claimed] = _claimed(world_a, registered)
    response = agent_client.post(world_a.url(f"flow-runs/{run['id']}/set-state/"),
                                 {"state": {"type": "RUNNING"}, "attempt": 1, "expected_version": 0}, format="json")
    error = assert_error(response, 409, "stale_state_version")
    assert error["details"]["state_type"] == "PENDING"


def test_set_state_replay_with_the_same_idempotency_key_is_applied_once(world_a, registered):
    _flow, run = registered
    agent_client, _agent_row, [claimed] = _claimed(world_a, registered)
    url = world_a.url(f"flow-runs/{run['id']}/set-state/")
    body = {"state": {"type": "RUNNING"}, "attempt": claimed["attempt"]}
    first = agent_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    replay = agent_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == replay.status_code == 200
    assert first.json() == replay.json()
    with rls_bypass():
        assert FlowRunState.all_objects.filter(flow_run_id=run["id"], type="RUNNING").count() == 1
    # the same key with another body is refused
    other = agent_client.post(url, {"state": {"type": "FAILED"}, "attempt": 1}, format="json",
                              HTTP_IDEMPOTENCY_KEY="k-1")
    assert_error(other, 422)


def test_log_batch_replay_stores_lines_once(world_a, registered):
    _flow, run = registered
    agent_client, _agent_row, _ = _claimed(world_a, registered)
    url = world_a.url(f"flow-runs/{run['id']}/logs/")
    body = {"lines": [{"sequence": 7, "level": 20, "timestamp": "2026-01-01T00:00:00Z", "message": "x"}]}
    assert agent_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="logs-1").json()["count"] == 1
    assert agent_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="logs-1").json()["count"] == 1
    assert agent_client.post(url, body, format="json").json()["count"] == 0  # same sequence, no key
    with rls_bypass():
        assert LogEntry.all_objects.filter(flow_run_id=run["id"]).count() == 1


def test_cancellation_reaches_the_agent_through_the_heartbeat(world_a, registered):
    _flow, run = registered
    agent_client, _agent_row, [claimed] = _claimed(world_a, registered)
    url = world_a.url(f"flow-runs/{run['id']}/")
    agent_client.post(url + "set-state/", {"state": {"type": "RUNNING"}, "attempt": 1}, format="json")
    cancel = world_a.client(Role.DEVELOPER).post(url + "cancel/", {}, format="json")
    assert cancel.status_code == 200 and cancel.json()["state_type"] == "CANCELLING"
    assert agent_client.post(url + "heartbeat/", {"attempt": 1}, format="json").json()["cancellation_requested"]
    confirmed = agent_client.post(url + "set-state/", {"state": {"type": "CANCELLED"}, "attempt": 1}, format="json")
    assert confirmed.json()["state"]["type"] == "CANCELLED"


def test_agent_key_can_do_agent_things_only(world_a, registered):
    flow, run = registered
    agent_client = world_a.client(Role.AGENT)
    url = world_a.url(f"flow-runs/{run['id']}/")
    for method, path, body in [
        ("get", "flow-runs/", None), ("post", "flow-runs/", {"flow": flow["id"]}),
        ("get", f"flows/{flow['id']}/", None),
        ("post", f"flow-runs/{run['id']}/cancel/", {}), ("delete", f"flow-runs/{run['id']}/", None),
        ("put", "concurrency-limits/", {"tag": "db", "limit": 1}), ("get", "agents/", None),
    ]:
        response = getattr(agent_client, method)(world_a.url(path), body, format="json")
        assert_error(response, 403, "permission_denied")
    assert agent_client.get(url + "logs/").status_code == 403


def test_viewer_cannot_act_as_an_agent_or_create_runs(world_a, registered):
    flow, run = registered
    viewer = world_a.client(Role.VIEWER, key=True)
    url = world_a.url(f"flow-runs/{run['id']}/")
    assert_error(viewer.post(url + "set-state/", {"state": {"type": "RUNNING"}}, format="json"), 403)
    assert_error(viewer.post(url + "logs/", {"lines": []}, format="json"), 403)
    assert_error(viewer.post(world_a.url("agents/"), {"name": "x", "type": "process"}, format="json"), 403)
    assert_error(viewer.post(world_a.url("flow-runs/"), {"flow": flow["id"]}, format="json"), 403)
    assert viewer.get(url).status_code == 200 and viewer.get(url + "logs/").status_code == 200


BAD_AGENT_CALLS = [
    ("flow-runs/{run}/set-state/", {"state": {"type": "DONE"}}),
    ("flow-runs/{run}/set-state/", {"state": {"type": "RUNNING"}, "attempt": "one"}),
    ("flow-runs/{run}/set-state/", {"state": {"type": "RUNNING"}, "agent": "me"}),
    ("flow-runs/{run}/set-state/", {"state": "RUNNING"}),
    ("flow-runs/{run}/task-runs/", {"attempt": 1, "reports": []}),
    ("flow-runs/{run}/task-runs/", {"attempt": 1, "reports": [{"task_key": "x", "state": {"type": "RUNNING"},
                                                               "result": "data"}]}),
    ("flow-runs/{run}/logs/", {"lines": [{"sequence": -1, "level": 20, "timestamp": "x", "message": "m"}]}),
    ("flow-runs/{run}/logs/", {"lines": [{"sequence": 1, "level": True, "timestamp": "2026-01-01T00:00:00Z",
                                          "message": "m"}]}),
    ("flow-runs/{run}/heartbeat/", {}),
    ("agents/", {"name": "a", "type": "lambda"}),
    ("agents/", {"name": "a", "type": "process", "labels": "prod"}),
    ("agents/{agent}/heartbeat/", {"polled": "often"}),
    ("agents/{agent}/claim/", {"limit": 0}),
    ("agents/{agent}/claim/", {"limit": 1, "lease_seconds": 10**9}),
]


@pytest.mark.parametrize(("path", "body"), BAD_AGENT_CALLS)
def test_bad_agent_input_is_a_clear_400(world_a, registered, path, body):
    _flow, run = registered
    agent_client = world_a.client(Role.AGENT)
    agent = _agent(world_a, agent_client)
    url = world_a.url(path.format(run=run["id"], agent=agent["id"]))
    assert_error(agent_client.post(url, body, format="json"), 400)


def test_malformed_json_to_an_agent_endpoint_is_400(world_a, registered):
    _flow, run = registered
    response = world_a.client(Role.AGENT).post(world_a.url(f"flow-runs/{run['id']}/set-state/"), data="{",
                                                content_type="application/json")
    assert_error(response, 400, "malformed_request")


def test_wait_answers_200_with_a_retry_hint(world_a, registered):
    from orchestration.api.views import _set_state_body
    from orchestration.engine import OrchestrationResult, SetStateStatus

    code, body = _set_state_body(OrchestrationResult(status=SetStateStatus.WAIT, state_type="PENDING",
                                                     state_name="Pending", state_version=3, reason="slot busy",
                                                     details={"retry_after_seconds": 7}))
    assert code == 200 and body["status"] == "WAIT" and body["retry_after_seconds"] == 7


def test_agents_list_shows_status_with_constant_queries(world_a, django_assert_max_num_queries):
    from tests.orchestration.factories import AgentFactory

    client = world_a.client(Role.VIEWER)
    AgentFactory(workspace=world_a.workspace)
    with django_assert_max_num_queries(12) as one:
        first = client.get(world_a.url("agents/")).json()["results"]
    assert first[0]["status"] == "offline"
    for _ in range(19):
        AgentFactory(workspace=world_a.workspace)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(client.get(world_a.url("agents/")).json()["results"]) == 20


def test_task_run_list_has_constant_queries(world_a, registered, django_assert_max_num_queries):
    from tests.orchestration.factories import TaskRunFactory

    _flow, run = registered
    client = world_a.client(Role.VIEWER)
    with rls_bypass():
        flow_run = FlowRun.all_objects.get(pk=run["id"])
    TaskRunFactory(flow_run=flow_run)
    url = world_a.url(f"flow-runs/{run['id']}/task-runs/")
    with django_assert_max_num_queries(12) as one:
        client.get(url)
    for _ in range(19):
        TaskRunFactory(flow_run=flow_run)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(client.get(url).json()["results"]) == 20
    with rls_bypass():
        assert TaskRun.all_objects.filter(flow_run=flow_run).count() == 20


def test_task_run_batch_heartbeat_and_claim_replays_return_the_stored_response(world_a, registered):
    _flow, run = registered
    agent_client = world_a.client(Role.AGENT)
    agent = _agent(world_a, agent_client)
    claim_url = world_a.url(f"agents/{agent['id']}/claim/")
    first_claim = agent_client.post(claim_url, {"limit": 1}, format="json", HTTP_IDEMPOTENCY_KEY="c-1").json()
    # a replayed claim (lost response) hands back the same run, it does not claim another
    assert agent_client.post(claim_url, {"limit": 1}, format="json", HTTP_IDEMPOTENCY_KEY="c-1").json() == first_claim
    url = world_a.url(f"flow-runs/{run['id']}/")
    agent_client.post(url + "set-state/", {"state": {"type": "RUNNING"}, "attempt": 1}, format="json")
    batch = {"attempt": 1, "reports": [{"task_key": "extract", "state": {"type": "RUNNING"}}]}
    first = agent_client.post(url + "task-runs/", batch, format="json", HTTP_IDEMPOTENCY_KEY="t-1")
    replay = agent_client.post(url + "task-runs/", batch, format="json", HTTP_IDEMPOTENCY_KEY="t-1")
    assert first.status_code == replay.status_code == 200 and first.json() == replay.json()
    with rls_bypass():
        from orchestration.models import TaskRunState

        assert TaskRunState.all_objects.filter(task_run__flow_run_id=run["id"]).count() == 1
    hb = agent_client.post(url + "heartbeat/", {"attempt": 1}, format="json", HTTP_IDEMPOTENCY_KEY="h-1")
    assert hb.json() == agent_client.post(url + "heartbeat/", {"attempt": 1}, format="json",
                                          HTTP_IDEMPOTENCY_KEY="h-1").json()
    assert_error(agent_client.post(url + "heartbeat/", {"attempt": 1}, format="json",
                                   HTTP_IDEMPOTENCY_KEY="x" * 201), 400)


def test_a_person_cannot_register_an_agent(world_a):
    response = world_a.client(Role.DEVELOPER).post(world_a.url("agents/"), {"name": "x", "type": "process"},
                                                   format="json")
    assert_error(response, 403, "service_account_required")
