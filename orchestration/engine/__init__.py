"""The run state machine's one entry point (see core.py). Everything that changes a run's state —
the REST adapters, the scheduler's late-run marker, the reaper, manual actions — calls
:func:`flow_run_set_state` or :func:`task_run_set_state` with a policy."""

from .core import (
    OrchestrationResult,
    ProposedState,
    SetStateStatus,
    db_now,
    flow_run_set_state,
    task_run_set_state,
)
from .policies import CorePolicy, ForcePolicy, ReaperPolicy, TaskPolicy

__all__ = [
    "CorePolicy",
    "ForcePolicy",
    "ReaperPolicy",
    "TaskPolicy",
    "db_now",
    "OrchestrationResult",
    "ProposedState",
    "SetStateStatus",
    "flow_run_set_state",
    "task_run_set_state",
]
