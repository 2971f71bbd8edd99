"""The client against the real server (uvicorn subprocess on the test database): every call of the
agent protocol and of the CLI, the workspace discovered from a key, and the server's errors turned
into the client's exceptions."""

from __future__ import annotations

import uuid

import pytest

from flowdeck.client import (
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from tests.conftest import WorkspaceWorld
from tests.sdk.client.live import claimed_run, client_for, metadata


def test_the_workspace_is_discovered_from_a_key(live_server_url: str, live_world: WorkspaceWorld) -> None:
    for role in ("developer", "agent"):
        client = Client(live_server_url, live_world.keys[role])
        assert client.workspace == live_world.workspace.slug
    assert client_for(live_server_url, live_world, "developer", workspace=None).list_flows() == []


def test_register_is_idempotent_by_content(live_server_url: str, live_world: WorkspaceWorld) -> None:
    client = client_for(live_server_url, live_world, "developer")
    first, created = client.register_flow(project="data", name="etl", metadata=metadata())
    assert created and first["version"] == 1
    again, created = client.register_flow(project="data", name="etl", metadata=metadata())
    assert not created and again["id"] == first["id"]
    changed, created = client.register_flow(project="data", name="etl", metadata=metadata(["a", "b", "c"]))
    assert created and changed["version"] == 2 and changed["flow"] == first["flow"]

    flows = client.list_flows()
    assert [(f["name"], f["project_name"]) for f in flows] == [("etl", "data")]
    assert client.get_flow("etl")["id"] == first["flow"]
    assert client.get_flow(first["flow"])["name"] == "etl"
    assert client.list_flows(project="data")[0]["id"] == first["flow"]
    assert client.list_flows(project="other") == []


def test_flow_lookups_by_name_explain_missing_and_ambiguous(live_server_url: str, live_world: WorkspaceWorld) -> None:
    client = client_for(live_server_url, live_world, "developer")
    with pytest.raises(NotFoundError, match="No flow named 'nope'.*flowdeck register"):
        client.get_flow("nope")
    client.register_flow(project="one", name="twin", metadata=metadata())
    client.register_flow(project="two", name="twin", metadata=metadata())
    with pytest.raises(InvalidRequestError, match="Several flows are named 'twin'.*--project"):
        client.get_flow("twin")
    assert client.get_flow("twin", project="two")["project_name"] == "two"


def test_runs_create_list_cancel(live_server_url: str, live_world: WorkspaceWorld) -> None:
    client = client_for(live_server_url, live_world, "developer")
    version, _ = client.register_flow(project="data", name="etl", metadata=metadata(
        parameters=[{"name": "day", "type": "str", "default": "monday", "required": False}]))
    key = str(uuid.uuid4())
    run = client.create_flow_run(version["flow"], parameters={"day": "friday"}, labels=["prod"], name="by-test",
                                 idempotency_key=key)
    assert run["state_type"] == "SCHEDULED" and run["parameters"] == {"day": "friday"}
    assert client.create_flow_run(version["flow"], idempotency_key=key)["id"] == run["id"]
    other = client.create_flow_run(version["flow"])
    assert other["id"] != run["id"]

    assert [r["id"] for r in client.list_flow_runs()] == [other["id"], run["id"]]
    assert [r["id"] for r in client.list_flow_runs(limit=1)] == [other["id"]]
    assert [r["id"] for r in client.list_flow_runs(labels=["prod"])] == [run["id"]]

    cancelled = client.cancel_flow_run(run["id"])
    assert cancelled["state_type"] == "CANCELLED"  # nobody held it
    assert [r["id"] for r in client.list_flow_runs(state_type="CANCELLED")] == [run["id"]]
    assert [r["id"] for r in client.list_flow_runs(state_type=["CANCELLED", "SCHEDULED"], flow=version["flow"])] \
        == [other["id"], run["id"]]
    detail = client.get_flow_run(run["id"])
    assert [s["type"] for s in detail["states"]][-1] == "CANCELLED"


def test_the_agent_protocol_end_to_end(live_server_url: str, live_world: WorkspaceWorld) -> None:
    claimed = claimed_run(live_server_url, live_world)
    agent = claimed.agent
    beat = agent.agent_heartbeat(claimed.agent_id, polled=True)
    assert beat["cancel_flow_run_ids"] == [] and beat["status"] == "healthy"

    answer = agent.set_flow_run_state(claimed.run_id, {"type": "RUNNING", "name": "Running"},
                                      attempt=claimed.attempt)
    assert answer["status"] == "ACCEPT" and answer["state"]["type"] == "RUNNING"
    assert agent.flow_run_heartbeat(claimed.run_id, attempt=claimed.attempt)["cancellation_requested"] is False

    reports = [
        {"task_key": "extract", "map_index": -1, "state": {"type": "RUNNING"}},
        {"task_key": "extract", "map_index": -1, "state": {"type": "COMPLETED", "name": "Success",
                                                           "result_ref": "results/extract"}},
    ]
    key = str(uuid.uuid4())
    results = agent.report_task_runs(claimed.run_id, attempt=claimed.attempt, reports=reports, idempotency_key=key)
    assert [r["status"] for r in results] == ["ACCEPT", "ACCEPT"]
    # A replay with the same key is answered from the stored response and applies nothing again.
    assert agent.report_task_runs(claimed.run_id, attempt=claimed.attempt, reports=reports,
                                  idempotency_key=key) == results
    with pytest.raises(InvalidRequestError) as caught:
        agent.report_task_runs(claimed.run_id, attempt=claimed.attempt, reports=reports[:1], idempotency_key=key)
    assert caught.value.status == 422 and caught.value.code == "idempotency_key_reused"

    lines = [{"sequence": n, "level": 20, "timestamp": "2026-01-01T00:00:00+00:00", "logger": "t",
              "message": f"line {n}"} for n in (1, 2)]
    assert agent.send_logs(claimed.run_id, lines) == 2
    assert agent.send_logs(claimed.run_id, lines) == 0  # unique per (run, sequence)

    task_runs = claimed.developer.list_task_runs(claimed.run_id)
    assert [(t["task_key"], t["state_type"], t["result_ref"]) for t in task_runs] == [
        ("extract", "COMPLETED", "results/extract")]
    logs = claimed.developer.list_logs(claimed.run_id)
    assert [line["message"] for line in logs["results"]] == ["line 1", "line 2"]
    assert logs["next_after_sequence"] == 2
    assert claimed.developer.list_logs(claimed.run_id, after_sequence=1)["results"][0]["sequence"] == 2

    done = agent.set_flow_run_state(claimed.run_id, {"type": "COMPLETED", "name": "Success"},
                                    attempt=claimed.attempt)
    assert done["status"] == "ACCEPT" and done["state"]["type"] == "COMPLETED"
    # Terminal states absorb: the next proposal is a 409 REJECT, returned, not raised.
    assert agent.set_flow_run_state(claimed.run_id, {"type": "RUNNING"}, attempt=claimed.attempt)["status"] \
        == "REJECT"
    with pytest.raises(ConflictError) as hb:
        agent.flow_run_heartbeat(claimed.run_id, attempt=claimed.attempt)
    assert hb.value.code == "run_not_held"
    [listed] = claimed.developer.list_agents()
    assert listed["name"] == "test-agent" and listed["status"] == "healthy"


def test_a_stale_attempt_is_a_conflict(live_server_url: str, live_world: WorkspaceWorld) -> None:
    claimed = claimed_run(live_server_url, live_world)
    with pytest.raises(ConflictError) as caught:
        claimed.agent.report_task_runs(claimed.run_id, attempt=claimed.attempt + 1,
                                       reports=[{"task_key": "extract", "state": {"type": "RUNNING"}}])
    assert caught.value.code == "stale_attempt"
    answer = claimed.agent.set_flow_run_state(claimed.run_id, {"type": "RUNNING"}, attempt=claimed.attempt + 1)
    assert answer["status"] == "ABORT"


def test_server_errors_become_clear_exceptions(live_server_url: str, live_world: WorkspaceWorld) -> None:
    with pytest.raises(AuthenticationError, match="refused the API key.*flowdeck login"):
        Client(live_server_url, "fd_nonsense", live_world.workspace.slug, retries=0).list_flows()
    viewer = client_for(live_server_url, live_world, "viewer")
    with pytest.raises(PermissionDeniedError) as denied:
        viewer.register_flow(project="data", name="etl", metadata=metadata())
    assert denied.value.status == 403
    developer = client_for(live_server_url, live_world, "developer")
    with pytest.raises(NotFoundError):
        developer.get_flow_run(str(uuid.uuid4()))
    bad = metadata()
    bad["edges"].append({"upstream": "load", "downstream": "extract", "key": None})
    with pytest.raises(InvalidRequestError, match="cycle") as invalid:
        developer.register_flow(project="data", name="etl", metadata=bad)
    assert invalid.value.code == "dag_cycle"
    assert "cycle" in invalid.value.details["edges"]
