"""Tasks that work with the Flowdeck server (Prefect 1's ``prefect.tasks.prefect``): a flow of flows.

- :func:`create_flow_run`: start a run of a registered flow (linked to the run that starts it).
- :func:`wait_for_flow_run`: wait for a run's final state; a :class:`FlowRunView` of it.
- :func:`get_task_run_result`: a task's result in another run, read from its ``Result``.
- :class:`StartFlowRun`: the older one-task form (start, and optionally wait).

See :mod:`flowdeck.tasks.flowdeck.flow_run` for the API key these tasks use and where results
must be stored.
"""

from flowdeck.tasks.flowdeck.flow_run import (
    ENV_CHILD_RUNS_API_KEY,
    FlowRunView,
    create_flow_run,
    get_task_run_result,
    wait_for_flow_run,
)
from flowdeck.tasks.flowdeck.start_flow_run import StartFlowRun

__all__ = [
    "ENV_CHILD_RUNS_API_KEY",
    "FlowRunView",
    "StartFlowRun",
    "create_flow_run",
    "get_task_run_result",
    "wait_for_flow_run",
]
