"""Task-run states reported by an agent, many at once: the batch entry point of the engine.

An agent reports the task runs of one flow-run attempt in batches. The batch goes through the same
steps as :func:`~orchestration.engine.core.task_run_set_state` (core.py), only once per batch
where one per report would cost a round trip each:

1. lock: the flow run ``FOR SHARE`` (:func:`share_lock_flow_run`: its attempt and state cannot
   change meanwhile, D2; batches of one run proceed in parallel), read with the database clock and
   its version's tasks in the same statement, then the task runs ``FOR UPDATE`` in one query
   (:func:`lock_task_runs`), created on first sight with one bulk insert;
2. per report, in order (a batch may carry PENDING, RUNNING and COMPLETED of one task): the
   expected-version check (:func:`check_expected_version`), the TaskPolicy's decision
   (:func:`decide`) and, when accepted, the history row and the new state in memory
   (:func:`accept`) and the rules' after hooks;
3. write: the history rows and the task runs' new states in one statement on PostgreSQL (the bulk
   insert as a CTE of the bulk update);
4. publish: one ``task_run.states_changed`` event (``orchestration.events``).

Refused as a whole (409, nothing applied; the agent stops the run), like a single proposal: a
stale attempt (``stale_attempt``), a flow run that has ended (``run_not_held``: its open task runs
were ended with it) and a stale ``expected_version`` on any report (``stale_state_version``, the
engine's one answer for a stale version, see core.py). Raised errors leave the caller's
transaction to roll back what the batch wrote before them (the service's ``atomic``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection

from accounts.authz import NotFound, Principal
from core.errors import Conflict
from core.rows import Columns, insert_many, insert_many_and_update_many, new
from core.transactions import in_transaction
from orchestration import events
from orchestration.models import TERMINAL_STATES, TaskRun, TaskRunState

from .core import (
    Context,
    OrchestrationResult,
    ProposedState,
    _after,
    _result,
    accept,
    check_expected_version,
    decide,
    lock_task_runs,
    run_not_held_reason,
    share_lock_flow_run,
    stale_attempt_reason,
)
from .policies import TaskPolicy

# The task-run fields a report may change (the state, and what the TaskPolicy's rules set).
_UPDATE_FIELDS = ["state_type", "state_name", "state_message", "state_timestamp", "state_version", "result_ref",
                  "attempt", "start_time", "end_time", "flow_run_attempt"]
_WRITE_CHUNK = 1000  # rows per statement on SQLite


@dataclass(frozen=True)
class TaskRunReport:
    """One report of a batch: the task run (``task_key``, ``map_index``; -1 for an unmapped task)
    and the state proposed for it, optionally conditional on the version last seen."""

    task_key: str
    map_index: int
    state: ProposedState
    expected_version: int | None = None


# A refusal after the first writes rolls back the caller's transaction (the service's savepoint).
@in_transaction
def task_run_set_states(
    *, actor: Principal | None, workspace_id: Any, flow_run_id: Any, attempt: int, reports: list[TaskRunReport]
) -> list[OrchestrationResult]:
    """Apply ``reports`` (task runs of ``flow_run_id``'s ``attempt``) in order; one result per
    report: ACCEPT, or REJECT/WAIT with a reason. Raises ``Conflict`` (409, nothing applied) for a
    stale attempt (``stale_attempt``), an ended flow run (``run_not_held``) or a stale expected
    version (``stale_state_version``), ``NotFound`` for no such run. The caller authorizes and
    scopes the transaction to the workspace."""
    locked = share_lock_flow_run(workspace_id, flow_run_id, "attempt", "state_type", "state_name", with_now=True,
                                 with_version_tasks=True)
    if locked is None:
        raise NotFound()
    current_attempt, flow_run_state, flow_run_state_name, now, specs = locked
    if attempt != current_attempt:
        raise Conflict(stale_attempt_reason(attempt, current_attempt), code="stale_attempt",
                       details={"attempt": current_attempt})
    if flow_run_state in TERMINAL_STATES:
        raise Conflict(run_not_held_reason(flow_run_state_name), code="run_not_held",
                       details={"attempt": current_attempt, "state_type": flow_run_state,
                                "state_name": flow_run_state_name})
    tasks: dict[str, Any] = {str(t.get("key")): t for t in specs if isinstance(t, dict)}
    runs = _locked_task_runs(workspace_id, flow_run_id, {(r.task_key, r.map_index) for r in reports},
                             tasks=tasks, attempt=current_attempt, now=now)

    # What the rules look up once per batch (the version's tasks, the flow run's state, limits…).
    cache: dict[str, Any] = {"version_tasks": tasks, "flow_run_state": flow_run_state}
    policy = TaskPolicy()
    history: list[TaskRunState] = []
    changed: dict[Any, TaskRun] = {}
    results: list[OrchestrationResult] = []
    for report in reports:
        run = runs[(report.task_key, report.map_index)]
        check_expected_version(run, report.expected_version, task_key=report.task_key, map_index=report.map_index)
        context = Context(run=run, proposed=report.state, actor=actor, now=now, cache=cache, attempt=current_attempt)
        if decide(policy, context):
            history.append(accept(run, context, TaskRunState, "task_run"))
            changed[run.pk] = run
            _after(policy, context)
        results.append(_result(run, context))
    if history:
        _write(history, list(changed.values()))
        events.task_run_states_changed(workspace_id, flow_run_id, list(changed.values()))
    return results


def _locked_task_runs(
    workspace_id: Any, flow_run_id: Any, keys: set[tuple[str, int]], *, tasks: dict[str, Any], attempt: int,
    now: Any,
) -> dict[tuple[str, int], TaskRun]:
    """The task runs ``keys`` name, locked; those seen for the first time are created first."""
    runs = _lock(workspace_id, flow_run_id, keys)
    missing = keys - set(runs)
    if missing:
        created = [
            new(TaskRun, workspace_id=workspace_id, flow_run_id=flow_run_id, task_key=key, map_index=index,
                tags=[t for t in tasks.get(key, {}).get("tags", []) if isinstance(t, str)],
                flow_run_attempt=attempt, state_timestamp=now, created_at=now)
            for key, index in sorted(missing)
        ]
        # ignore_conflicts: a concurrent batch may create the same task run
        if settings.IS_POSTGRES:
            # A row this statement inserts is this transaction's alone until it commits, as a locked
            # one is, and holds what the instance holds: only the rows a concurrent batch created
            # first are read and locked (a first report: one statement less, nothing read back).
            inserted = set(insert_many(TaskRun, created, ignore_conflicts=True, returning="id"))
            for run in created:
                if run.pk in inserted:
                    run._state.adding, run._state.db = False, DEFAULT_DB_ALIAS  # as if read
                    runs[(run.task_key, run.map_index)] = run
            missing = {(run.task_key, run.map_index) for run in created if run.pk not in inserted}
        else:
            TaskRun.objects.unscoped().bulk_create(created, ignore_conflicts=True)
        if missing:
            runs.update(_lock(workspace_id, flow_run_id, missing))
    return runs


def _lock(workspace_id: Any, flow_run_id: Any, keys: set[tuple[str, int]]) -> dict[tuple[str, int], TaskRun]:
    task_keys, indexes = sorted({k for k, _ in keys}), sorted({i for _, i in keys})
    if settings.IS_POSTGRES:  # hand-written: compiling it cost more CPU than running it
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT {_TASK_RUN.sql}, statement_timestamp() FROM "orchestration_taskrun" t '  # noqa: S608
                'WHERE t."workspace_id" = %s AND t."flow_run_id" = %s AND t."task_key" = ANY(%s) '
                'AND t."map_index" = ANY(%s) ORDER BY t."task_key", t."map_index" FOR UPDATE',
                [getattr(workspace_id, "pk", workspace_id), flow_run_id, task_keys, indexes],
            )
            rows = []
            for row in cursor.fetchall():
                run = _TASK_RUN.load(row)
                run.db_now = row[_TASK_RUN.width]
                rows.append(run)
    else:
        rows = list(lock_task_runs(workspace_id, flow_run_id=flow_run_id, task_key__in=task_keys,
                                   map_index__in=indexes).order_by("task_key", "map_index"))
    return {(t.task_key, t.map_index): t for t in rows if (t.task_key, t.map_index) in keys}


_TASK_RUN = Columns(TaskRun, "t")


def _write(history: list[TaskRunState], runs: list[TaskRun]) -> None:
    """Insert the history rows and write the new state of ``runs`` (task runs of one flow run): on
    PostgreSQL in one statement."""
    if not settings.IS_POSTGRES:
        TaskRunState.objects.unscoped().bulk_create(history, batch_size=2 * _WRITE_CHUNK)
        TaskRun.objects.unscoped().bulk_update(runs, _UPDATE_FIELDS, batch_size=500)
        return
    # The run as well as the workspace: the index on both bounds what a plan may read to the run's
    # task runs (with the workspace alone it could be all of the workspace's).
    insert_many_and_update_many(history, runs, _UPDATE_FIELDS, where="t.workspace_id = %s AND t.flow_run_id = %s",
                                params=[runs[0].workspace_id, runs[0].flow_run_id])


__all__ = ["TaskRunReport", "task_run_set_states"]
