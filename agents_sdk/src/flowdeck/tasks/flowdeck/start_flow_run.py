"""``StartFlowRun``: Prefect 1's older flow-of-flows task, one task that starts a run of a registered
flow and, with ``wait=True``, waits for it and ends as it ended. New flows can use
:mod:`flowdeck.tasks.flowdeck.flow_run`'s ``create_flow_run`` and ``wait_for_flow_run`` instead."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from flowdeck.core.task import Task

from .flow_run import create_flow_run, wait_for_flow_run


class StartFlowRun(Task):
    """Start a run of the flow ``flow_name`` (in ``project_name``) with ``parameters``; the task's
    result is the new run's id. Inside an agent's flow run the new run is linked to this one as
    its child, and a retried task finds the child it created before (see ``create_flow_run``).

    With ``wait=True`` the task waits for the child's final state (``stream_states``/``stream_logs``
    repeat its states and logs here, polling at most every ``poll_interval``) and fails when the
    child did not complete. Every argument can also be given to ``run()``, which wins."""

    def __init__(
        self,
        flow_name: str | None = None,
        project_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        wait: bool = False,
        labels: Iterable[str] | None = None,
        run_name: str | None = None,
        scheduled_start_time: datetime | None = None,
        poll_interval: timedelta = timedelta(seconds=10),
        stream_states: bool = True,
        stream_logs: bool = False,
        **kwargs: Any,
    ) -> None:
        self.flow_name = flow_name
        self.project_name = project_name
        self.parameters = dict(parameters) if parameters is not None else None
        self.wait = wait
        self.labels = list(labels) if labels is not None else None
        self.run_name = run_name
        self.scheduled_start_time = scheduled_start_time
        self.poll_interval = poll_interval
        self.stream_states = stream_states
        self.stream_logs = stream_logs
        super().__init__(**kwargs)

    def run(
        self,
        flow_name: str | None = None,
        project_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        labels: Iterable[str] | None = None,
        run_name: str | None = None,
        scheduled_start_time: datetime | None = None,
    ) -> str:
        flow_name = flow_name or self.flow_name
        if not flow_name:
            raise ValueError("StartFlowRun needs a flow_name (when created or when called).")
        flow_run_id: str = create_flow_run.run(
            flow_name=flow_name,
            project_name=project_name or self.project_name or "",
            parameters=parameters if parameters is not None else self.parameters,
            labels=labels if labels is not None else self.labels,
            run_name=run_name or self.run_name,
            idempotency_key=idempotency_key,
            scheduled_start_time=scheduled_start_time or self.scheduled_start_time,
        )
        if self.wait:
            wait_for_flow_run.run(flow_run_id, stream_states=self.stream_states, stream_logs=self.stream_logs,
                                  raise_final_state=True, max_poll_seconds=self.poll_interval.total_seconds())
        return flow_run_id


__all__ = ["StartFlowRun"]
