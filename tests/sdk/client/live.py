"""Helpers for tests that talk to the live server: flow metadata in the server's registration
format, and a run claimed by a registered agent (ready to report on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowdeck.client import Client
from tests.conftest import WorkspaceWorld


def metadata(task_keys: list[str] | None = None, *, parameters: list[dict[str, Any]] | None = None,
             module: str = "flows.example") -> dict[str, Any]:
    """Registration metadata of a chain of tasks (``flow.serialize()``'s format)."""
    keys = task_keys or ["extract", "load"]
    return {
        "tasks": [{"key": k, "name": k.title(), "tags": [], "retries": 0, "retry_delay_seconds": None,
                   "timeout_seconds": None, "trigger": "all_successful", "mapped": False} for k in keys],
        "edges": [{"upstream": a, "downstream": b, "key": None} for a, b in zip(keys, keys[1:], strict=False)],
        "parameters": parameters or [],
        "schedule": None,
        "storage": {"type": "module", "module": module},
        "labels": [],
        "run_config": {},
    }


def client_for(url: str, world: WorkspaceWorld, role: str, **kwargs: Any) -> Client:
    options: dict[str, Any] = {"retries": 1, "backoff_base": 0.05, "workspace": world.workspace.slug}
    options.update(kwargs)
    return Client(url, world.keys[role], **options)


@dataclass
class ClaimedRun:
    flow_id: str
    run_id: str
    attempt: int
    agent_id: str
    developer: Client
    agent: Client


def claimed_run(url: str, world: WorkspaceWorld, task_keys: list[str] | None = None,
                flow_name: str = "etl") -> ClaimedRun:
    """Register a flow, create a run and claim it with a registered agent (the run is PENDING)."""
    developer = client_for(url, world, "developer")
    agent = client_for(url, world, "agent")
    version, _ = developer.register_flow(project="data", name=flow_name, metadata=metadata(task_keys))
    run = developer.create_flow_run(version["flow"])
    agent_record = agent.register_agent("test-agent", "process", [], "0.1.0", 5)
    claimed = agent.claim(agent_record["id"], limit=1, lease_seconds=60)
    assert [c["id"] for c in claimed] == [run["id"]], claimed
    return ClaimedRun(flow_id=version["flow"], run_id=run["id"], attempt=claimed[0]["attempt"],
                      agent_id=agent_record["id"], developer=developer, agent=agent)
