"""What ``Client.get_flow_run_info`` returns: Prefect 1's ``FlowRunInfoResult`` and
``TaskRunInfoResult`` shapes, with each state as a ``flowdeck.engine.state`` object."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

# The server's coarse state types, as the state class to use when the state's name is not one.
_BY_TYPE = {
    "SCHEDULED": "Scheduled", "PENDING": "Pending", "RUNNING": "Running", "COMPLETED": "Success",
    "FAILED": "Failed", "CANCELLING": "Cancelling", "CANCELLED": "Cancelled", "CRASHED": "Crashed",
    "PAUSED": "Paused",
}


class TaskRunInfo(NamedTuple):
    """One task run: ``task_slug`` is the task's key in its flow."""

    id: str
    task_slug: str
    map_index: int
    state: Any
    result_ref: str | None


class FlowRunInfo(NamedTuple):
    """A flow run as Prefect 1's ``Client.get_flow_run_info`` describes it (``version`` is the
    flow version's id; Flowdeck keeps no per-run context, so there is none)."""

    id: str
    name: str
    flow_id: str
    version: str | None
    parameters: dict[str, Any]
    labels: list[str]
    scheduled_start_time: datetime | None
    state: Any
    task_runs: list[TaskRunInfo]


def state_from_server(state_type: str | None, state_name: str | None, message: str | None = None,
                      result_ref: str | None = None) -> Any:
    """The ``flowdeck.engine.state`` object of a server state: the class named ``state_name``
    (the runners report their class names), else the one of its ``state_type``."""
    from flowdeck.engine import state as states

    cls = getattr(states, state_name or "", None)
    if not (isinstance(cls, type) and issubclass(cls, states.State)):
        cls = getattr(states, _BY_TYPE.get(state_type or "", "Pending"))
    state = cls(message=message or None)
    state.result_ref = result_ref or None
    return state


def _datetime(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def flow_run_info(run: dict[str, Any]) -> FlowRunInfo:
    """A ``FlowRunInfo`` from the REST API's flow-run detail."""
    task_runs = [
        TaskRunInfo(
            id=str(tr["id"]), task_slug=str(tr["task_key"]), map_index=int(tr.get("map_index", -1)),
            state=state_from_server(tr.get("state_type"), tr.get("state_name"), tr.get("state_message"),
                                    tr.get("result_ref")),
            result_ref=tr.get("result_ref") or None,
        )
        for tr in run.get("task_runs", [])
    ]
    return FlowRunInfo(
        id=str(run["id"]), name=str(run.get("name") or ""), flow_id=str(run.get("flow")),
        version=str(run["flow_version"]) if run.get("flow_version") else None,
        parameters=dict(run.get("parameters") or {}), labels=list(run.get("labels") or []),
        scheduled_start_time=_datetime(run.get("scheduled_start")),
        state=state_from_server(run.get("state_type"), run.get("state_name"), run.get("state_message")),
        task_runs=task_runs,
    )


__all__ = ["FlowRunInfo", "TaskRunInfo", "flow_run_info", "state_from_server"]
