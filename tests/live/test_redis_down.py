"""G3: with Redis stopped, live updates degrade but REST and claims keep working. The server here
points at a Redis that is not there (nothing listens on its port), from start to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import WorkspaceWorld, build_world
from tests.sdk.conftest import LiveServer, free_port

FLOW = {
    "tasks": [{"key": "t", "name": "t"}], "edges": [], "parameters": [], "storage": {"type": "module", "module": "f"}
}


class NoRedisServer(LiveServer):
    def env(self) -> dict[str, str]:
        return {**super().env(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


@pytest.fixture(scope="module")
def server_without_redis(django_db_setup, tmp_path_factory) -> Iterator[NoRedisServer]:  # type: ignore[no-untyped-def]
    log_dir: Path = tmp_path_factory.mktemp("no-redis")
    server = NoRedisServer(periodic_every=None, log_dir=log_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def test_g3_rest_and_claims_work_while_redis_is_down(server_without_redis, world):
    base = f"{server_without_redis.url}/api/v1/workspaces/{world.workspace.slug}/"
    developer = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {world.keys['developer']}"}, timeout=30)
    agent = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {world.keys['agent']}"}, timeout=30)
    # a developer registers a flow and starts a run
    registered = developer.post("flows/register/", json={"project": "p", "name": "f", "metadata": FLOW})
    assert registered.status_code == 201, registered.text
    run = developer.post("flow-runs/", json={"flow": registered.json()["version"]["flow"]})
    assert run.status_code == 201, run.text
    # an agent registers, heartbeats and claims it, and reports it to the end
    agent_row = agent.post("agents/", json={"name": "a", "type": "process"})
    assert agent_row.status_code in (200, 201), agent_row.text
    agent_id = agent_row.json()["id"]
    assert agent.post(f"agents/{agent_id}/heartbeat/", json={"polled": True}).status_code == 200
    claimed = agent.post(f"agents/{agent_id}/claim/", json={"limit": 1, "lease_seconds": 30})
    assert claimed.status_code == 200, claimed.text
    assert [r["id"] for r in claimed.json()["results"]] == [run.json()["id"]]
    url = f"flow-runs/{run.json()['id']}/"
    for state in ("RUNNING", "COMPLETED"):
        answer = agent.post(url + "set-state/", json={"state": {"type": state}, "attempt": 1})
        assert answer.status_code == 200 and answer.json()["status"] == "ACCEPT", answer.text
    assert developer.get(url).json()["state_type"] == "COMPLETED"
    # and a wrong key is still a clear 401, not a 500
    assert httpx.get(base + "flows/", headers={"Authorization": "Bearer fd_u_nope"}).status_code == 401
