"""The run state machine's one write path (see core.py). Everything that changes a run's state —
the REST adapters, agents' task-run reports, the scheduler's late-run marker, the reaper, manual
actions — calls :func:`flow_run_set_state`, :func:`task_run_set_state` or, for a batch of
task-run reports, :func:`task_run_set_states` (batch.py), with a policy. The three share the
lock, the expected-version check (one answer for a stale version: 409 ``stale_state_version``),
the history rows and the events.

A run is born in its first state (SCHEDULED, version 1) through :func:`new_scheduled_run` and
:func:`insert_scheduled_runs` (creation.py), used by the single create, the bulk create and the
scheduler. :func:`db_now` is the database clock every state time is taken from.
"""

from .batch import TaskRunReport, task_run_set_states
from .core import (
    OrchestrationResult,
    ProposedState,
    SetStateStatus,
    db_now,
    flow_run_set_state,
    lock_flow_runs,
    locked_flow_runs,
    task_run_set_state,
)
from .creation import insert_scheduled_run, insert_scheduled_runs, new_scheduled_run
from .policies import CorePolicy, ForcePolicy, ReaperPolicy, TaskPolicy

__all__ = [
    "CorePolicy",
    "ForcePolicy",
    "OrchestrationResult",
    "ProposedState",
    "ReaperPolicy",
    "SetStateStatus",
    "TaskPolicy",
    "TaskRunReport",
    "db_now",
    "flow_run_set_state",
    "insert_scheduled_run",
    "insert_scheduled_runs",
    "lock_flow_runs",
    "locked_flow_runs",
    "new_scheduled_run",
    "task_run_set_state",
    "task_run_set_states",
]
