"""``Flow.serialize()``: the registration metadata the Flowdeck server validates and stores.

Only metadata travels: task keys and settings, edges, parameter declarations, the schedule, where
the code lives (storage), how to run it (run config, with environment variable *names* only) and
the SLA policies declared with the flow (``flowdeck.sla``).
The output is deterministic (tasks in the order they were added, edges and parameters sorted) so
re-registering an unchanged flow reuses its version.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from flowdeck.sla import serialize_policies

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow
    from flowdeck.core.task import Task


def _int_seconds(value: float | None) -> int | None:
    # The server stores whole seconds; round up so a 0.5 s timeout is not registered as "none".
    return None if value is None else int(math.ceil(value))


def _task_metadata(flow: Flow, task: Task) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key": flow.key_of(task),
        "name": task.name[:200],
        "tags": sorted(task.tags),
        "retries": task.max_retries,
        "retry_delay_seconds": _int_seconds(task.retry_delay.total_seconds()) if task.retry_delay else None,
        "timeout_seconds": _int_seconds(task.timeout),
        "trigger": getattr(task.trigger, "__name__", type(task.trigger).__name__)[:200],
        "mapped": flow.is_mapped(task),
    }
    if task.cache_for is not None or task.cache_key is not None or task.cache_key_fn is not None:
        fn = task.cache_key_fn
        item["cache_key"] = (task.cache_key or (getattr(fn, "__name__", "cache_key_fn") if fn else "") or "")[:200]
        item["cache_expiration_seconds"] = _int_seconds(task.cache_for.total_seconds()) if task.cache_for else None
    return item


def _json_default(flow: Flow, name: str, value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"The default of parameter {name!r} of flow {flow.name!r} is not JSON ({type(value).__name__}); "
            "registered defaults must be plain JSON values (str, numbers, bools, lists, dicts, None)."
        ) from None
    return list(value) if isinstance(value, tuple) else value


def serialize_flow(flow: Flow) -> dict[str, Any]:
    """See the module docstring; the keys are exactly those the server accepts."""
    flow.validate()
    if not flow.tasks:
        raise ValueError(f"Flow {flow.name!r} has no tasks; there is nothing to register.")
    tasks = [_task_metadata(flow, t) for t in flow._order]
    edges: list[dict[str, Any]] = []
    for edge in flow.edges:
        item: dict[str, Any] = {
            "upstream": flow.key_of(edge.upstream_task),
            "downstream": flow.key_of(edge.downstream_task),
            "key": edge.key,
        }
        if edge.mapped:
            item["mapped"] = True
        edges.append(item)
    edges.sort(key=lambda e: (e["downstream"], e["key"] or "", e["upstream"], e.get("mapped", False)))
    parameters = []
    for p in sorted(flow.parameters(), key=lambda p: p.name):
        data = p.serialize()
        data["default"] = _json_default(flow, p.name, data["default"])
        parameters.append(data)
    storage = flow.storage if flow.storage is not None else flow.default_storage()
    metadata: dict[str, Any] = {
        "tasks": tasks,
        "edges": edges,
        "parameters": parameters,
        "schedule": flow.schedule.serialize() if flow.schedule is not None else None,
        "storage": storage.serialize(flow.name),
        "labels": sorted(flow.labels),
        "run_config": flow.run_config.serialize() if flow.run_config is not None else {},
    }
    # Always, even empty: each registration states the flow's policies, so removing them from the code
    # removes them from the server. They are the flow's live settings, not part of its version.
    metadata["sla_policies"] = serialize_policies(flow.name, flow.sla, sorted(flow.labels))
    return metadata


__all__ = ["serialize_flow"]
