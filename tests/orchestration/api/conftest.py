"""Helpers for the orchestration REST tests."""

from __future__ import annotations

import copy

import pytest

METADATA = {
    "tasks": [
        {"key": "extract", "name": "Extract", "tags": ["db"], "retries": 2, "retry_delay_seconds": 10},
        {"key": "transform", "name": "Transform", "tags": [], "retries": 0},
        {"key": "load", "name": "Load", "tags": ["db"], "retries": 1, "timeout_seconds": 600},
    ],
    "edges": [
        {"upstream": "extract", "downstream": "transform", "key": "rows"},
        {"upstream": "transform", "downstream": "load", "key": None},
    ],
    "parameters": [
        {"name": "day", "type": "str", "default": "today", "required": False},
        {"name": "limit", "type": "int", "default": 10, "required": False},
    ],
    "schedule": {"kind": "interval", "interval_seconds": 3600},
    "storage": {"type": "module", "module": "flows.etl"},
    "labels": ["prod"],
    "run_config": {"agent_type": "process", "env": ["DATABASE_URL", "API_TOKEN"]},
}


@pytest.fixture
def metadata():
    return copy.deepcopy(METADATA)


def register(client, world, metadata, *, project="etl", name="nightly"):
    return client.post(world.url("flows/register/"), {"project": project, "name": name, "metadata": metadata},
                       format="json")


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body["error"]) >= {"code", "message", "details"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
