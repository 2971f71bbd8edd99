"""``flow.serialize()`` carries Prefect 1's keys (``__version__``, ``name``, ``type``,
``reference_tasks``; per task ``slug`` and ``max_retries``) alongside Flowdeck's, and the server
accepts the whole dict and keeps the same version as without them."""

from __future__ import annotations

import json
from typing import Any

import flowdeck
from flowdeck import Flow, Parameter, task
from flowdeck.storage import Module

PREFECT1_KEYS = ("__version__", "name", "type", "reference_tasks")


@task(max_retries=3)
def extract(day: str) -> list[int]:
    return [1, 2]


@task
def load(rows: list[int]) -> int:
    return len(rows)


@task
def audit(rows: list[int]) -> None:
    return None


def build(reference: bool = False) -> tuple[Flow, dict[str, Any]]:
    with Flow("nightly", storage=Module("flows.nightly")) as flow:
        rows = extract(Parameter("day", default="today"))
        loaded = load(rows)
        audited = audit(rows)
    if reference:
        flow.set_reference_tasks([loaded])
    return flow, {"extract": rows, "load": loaded, "audit": audited}


class NightlyFlow(Flow):
    """A Flow subclass: ``type`` names it."""


def test_prefect1_keys_are_carried_alongside_flowdecks() -> None:
    flow, _ = build()
    meta = flow.serialize()
    assert meta["__version__"] == flowdeck.__version__
    assert meta["name"] == "nightly"
    assert meta["type"] == "flowdeck.core.flow.Flow"
    assert meta["reference_tasks"] == [{"slug": "audit"}, {"slug": "load"}]  # default: the terminal tasks
    tasks = {t["key"]: t for t in meta["tasks"]}
    assert tasks["extract"]["slug"] == "extract" and tasks["extract"]["max_retries"] == 3
    assert tasks["extract"]["retries"] == 3
    assert all(t["slug"] == t["key"] and t["max_retries"] == t["retries"] for t in meta["tasks"])
    assert {"tasks", "edges", "parameters", "schedule", "storage", "labels", "run_config", "sla_policies"} <= set(meta)
    json.dumps(meta)
    assert flow.serialize(build=True) == meta  # Prefect 1's argument; Flowdeck storage builds nothing


def test_reference_tasks_and_the_flow_class_are_what_the_flow_says() -> None:
    flow, _ = build(reference=True)
    assert flow.serialize()["reference_tasks"] == [{"slug": "load"}]
    with NightlyFlow("sub", storage=Module("flows.sub")) as sub:
        load([1])
    assert sub.serialize()["type"].endswith("test_library_serialize.NightlyFlow")


def test_the_server_accepts_them_and_keeps_the_same_version() -> None:
    from orchestration.services.flows import content_hash, validate_metadata

    flow, _ = build(reference=True)
    meta = flow.serialize()
    without = {k: v for k, v in meta.items() if k not in PREFECT1_KEYS}
    without["tasks"] = [{k: v for k, v in t.items() if k not in ("slug", "max_retries")} for t in meta["tasks"]]
    assert validate_metadata(meta) == validate_metadata(without)
    assert content_hash(validate_metadata(meta)) == content_hash(validate_metadata(without))
    assert "reference_tasks" not in validate_metadata(meta)
