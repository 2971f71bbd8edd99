"""The engine: states, signals, the flow and task runners, results and cache validators.

As in Prefect 1, ``flowdeck.engine.FlowRunner`` and ``flowdeck.engine.TaskRunner`` are the runners
(also importable from ``flowdeck.engine.flow_runner`` / ``flowdeck.engine.task_runner``). They are
imported on first use, so importing this package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowdeck.engine.flow_runner import FlowRunner
    from flowdeck.engine.task_runner import TaskRunner


def get_default_flow_runner_class() -> type[FlowRunner]:
    """The flow runner ``flow.run()`` uses (Prefect 1 reads it from the config; Flowdeck has one)."""
    from flowdeck.engine.flow_runner import FlowRunner

    return FlowRunner


def get_default_task_runner_class() -> type[TaskRunner]:
    """The task runner the flow runner uses."""
    from flowdeck.engine.task_runner import TaskRunner

    return TaskRunner


def __getattr__(name: str) -> Any:
    if name == "FlowRunner":
        return get_default_flow_runner_class()
    if name == "TaskRunner":
        return get_default_task_runner_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FlowRunner", "TaskRunner", "get_default_flow_runner_class", "get_default_task_runner_class"]
