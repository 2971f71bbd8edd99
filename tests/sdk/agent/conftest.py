"""Fixtures of the agent tests: a claim record as the server sends it, and the fake Docker and
Kubernetes APIs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flowdeck.agent.base import ClaimedRun
from tests.sdk.agent.fakes import FakeDocker, FakeKubernetes
from tests.sdk.agent.live import Live

RUN_ID = "0b7e6a3c-5f1d-4c2b-9a8e-1d2c3b4a5f60"
FLOW_ID = "9d2a1b3c-4d5e-4f60-8a7b-6c5d4e3f2a10"
VERSION_ID = "51aa2b3c-4d5e-4f60-8a7b-6c5d4e3f2a11"


def claim_record(**overrides: Any) -> dict[str, Any]:
    """A claimed run exactly as ``POST agents/{id}/claim/`` returns it (docs/agent-protocol.md)."""
    version = {
        "id": VERSION_ID, "flow": FLOW_ID, "version": 3, "content_hash": "abc",
        "tasks": [{"key": "extract", "name": "Extract", "tags": [], "retries": 0, "retry_delay_seconds": 0,
                   "timeout_seconds": None}],
        "edges": [], "parameters": [{"name": "day", "type": "str", "default": "today", "required": False}],
        "schedule": None,
        "storage": {"type": "module", "module": "flows.etl", "flow_name": "etl"},
        "labels": ["prod"],
        "run_config": {"agent_type": "docker", "image": "acme/etl:3", "env": ["DATABASE_URL", "MISSING_VAR"]},
        "is_archived": False, "created_at": "2026-01-01T00:00:00Z", "registered_by": None,
    }
    version.update(overrides.pop("version", {}))
    record = {
        "id": RUN_ID, "flow": FLOW_ID, "flow_version": VERSION_ID, "name": "nightly-0042",
        "parameters": {"day": "monday"}, "labels": ["prod"], "idempotency_key": None, "created_by_kind": "user",
        "created_by_user": None, "schedule": None, "scheduled_start": "2026-01-01T00:00:00Z",
        "state_type": "PENDING", "state_name": "Pending", "state_message": "",
        "state_timestamp": "2026-01-01T00:00:00Z",
        "state_version": 1, "agent": "6f1c0000-0000-4000-8000-000000000001", "lease_expires_at": "2026-01-01T00:01:00Z",
        "attempt": 2, "run_count": 1, "start_time": None, "end_time": None, "cancellation_requested": False,
        "created_at": "2026-01-01T00:00:00Z", "version": version,
        "task_runs": [
            {"id": "t1", "flow_run": RUN_ID, "task_key": "extract", "map_index": -1, "attempt": 1,
             "state_type": "COMPLETED", "state_name": "Success", "result_ref": "/results/extract", "tags": []},
            {"id": "t2", "flow_run": RUN_ID, "task_key": "load", "map_index": -1, "attempt": 1,
             "state_type": "FAILED", "state_name": "Failed", "result_ref": "", "tags": []},
        ],
    }
    record.update(overrides)
    return record


@pytest.fixture
def claimed() -> ClaimedRun:
    return ClaimedRun.from_claim(claim_record())


@pytest.fixture
def fake_docker() -> Iterator[FakeDocker]:
    api = FakeDocker().start()
    yield api
    api.stop()


@pytest.fixture
def fake_kubernetes() -> Iterator[FakeKubernetes]:
    api = FakeKubernetes().start()
    yield api
    api.stop()


@pytest.fixture
def live(live_server_url: str, live_world: Any, tmp_path: Any) -> Iterator[Live]:
    """The live server and a committed workspace; agents started with it are stopped afterwards."""
    env = Live(url=live_server_url, workspace=live_world.workspace.slug, developer_key=live_world.keys["developer"],
               agent_key=live_world.keys["agent"], directory=tmp_path)
    yield env
    env.close()
