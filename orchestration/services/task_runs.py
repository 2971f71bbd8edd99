"""Task-run states reported by agents, many at once.

An agent reports the task runs of one flow-run attempt in batches: ``{task_key, map_index,
state_type, state_name, message, result_ref, expected_version?}``. The batch is one transaction:
the flow run is locked FOR SHARE (its attempt cannot change meanwhile; D2), the task runs are read
and locked in one query (created on first sight with one bulk insert), the TaskPolicy decides each
report in memory in order (a batch may carry PENDING, RUNNING and COMPLETED of one task), and the
history rows and task-run rows are written with one bulk insert and one bulk update. Rules that
need the database (tag concurrency limits) query only for task runs whose tags are limited.

Reports are refused as a whole (409, nothing applied; the agent stops the run) when they belong to
an attempt that is not the run's current one (``stale_attempt``) or when the run has ended
(``run_not_held``: its open task runs were ended with it). The first report of a new attempt for
a task run an earlier attempt left starts that task run over; RUNNING proposed for a task run
already RUNNING is answered ACCEPT with nothing recorded (``already_running``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection, transaction

from accounts.authz import NotFound, Principal, authorize
from core.errors import Conflict, InvalidInput
from core.events import publish
from core.tenancy import workspace_scope
from orchestration.engine import OrchestrationResult, ProposedState, SetStateStatus, TaskPolicy
from orchestration.engine.core import (
    Context,
    apply_accepted,
    db_now,
    history_row,
    run_not_held_reason,
    stale_attempt_reason,
)
from orchestration.models import TERMINAL_STATES, FlowRun, FlowVersion, StateType, TaskRun, TaskRunState

MAX_REPORTS = 5_000
MAX_MESSAGE = 10_000
MAX_RESULT_REF = 1_000
MAX_KEY = 200
_REPORT_FIELDS = {"task_key", "map_index", "state_type", "state_name", "message", "result_ref", "expected_version"}
_UPDATE_FIELDS = ["state_type", "state_name", "state_message", "state_timestamp", "state_version", "result_ref",
                  "attempt", "start_time", "end_time", "flow_run_attempt"]


def _validate(reports: Any) -> list[dict[str, Any]]:
    if not isinstance(reports, list) or not reports:
        raise InvalidInput("reports must be a non-empty list.", details={"reports": ["Invalid."]})
    if len(reports) > MAX_REPORTS:
        raise InvalidInput(f"At most {MAX_REPORTS} reports per batch ({len(reports)} given).",
                           code="batch_too_large", details={"reports": [f"At most {MAX_REPORTS}."]})
    errors: dict[str, list[str]] = {}
    clean = []
    for i, report in enumerate(reports):
        path = f"reports[{i}]"
        if not isinstance(report, dict):
            errors[path] = ["Must be an object."]
            continue
        unknown = set(report) - _REPORT_FIELDS
        if unknown:
            errors[path] = [f"Unknown fields: {', '.join(sorted(unknown))}."]
        key = report.get("task_key")
        if not isinstance(key, str) or not key or len(key) > MAX_KEY:
            errors[f"{path}.task_key"] = [f"Must be a string of 1–{MAX_KEY} characters."]
        index = report.get("map_index", -1)
        if isinstance(index, bool) or not isinstance(index, int) or index < -1:
            errors[f"{path}.map_index"] = ["Must be an integer ≥ -1."]
        state_type = report.get("state_type")
        if state_type not in StateType.values:
            errors[f"{path}.state_type"] = [f"Must be one of {', '.join(StateType.values)}."]
        name = report.get("state_name") or ""
        if not isinstance(name, str) or len(name) > 32:
            errors[f"{path}.state_name"] = ["Must be a string of at most 32 characters."]
        message = report.get("message") or ""
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            errors[f"{path}.message"] = [f"Must be a string of at most {MAX_MESSAGE} characters."]
        ref = report.get("result_ref") or ""
        if not isinstance(ref, str) or len(ref) > MAX_RESULT_REF:
            errors[f"{path}.result_ref"] = [f"Must be a reference string of at most {MAX_RESULT_REF} characters."]
        expected = report.get("expected_version")
        if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 0):
            errors[f"{path}.expected_version"] = ["Must be a non-negative integer."]
        clean.append({"task_key": key, "map_index": index, "state_type": state_type, "state_name": name,
                      "message": message, "result_ref": ref, "expected_version": expected})
    if errors:
        first = next(iter(errors.items()))
        raise InvalidInput(f"{first[0]}: {first[1][0]}", code="invalid_report", details=errors)
    return clean


def _lock_flow_run(workspace_id: Any, flow_run_id: Any) -> tuple[int, Any, str, str] | None:
    """The run's attempt, version and state, with the row share-locked: batches of one run proceed
    in parallel, but the run's own state (and attempt) cannot change until this batch commits."""
    if not settings.IS_POSTGRES:
        row = FlowRun.objects.for_workspace(workspace_id).filter(pk=flow_run_id).values_list(
            "attempt", "flow_version_id", "state_type", "state_name").first()
        return row  # type: ignore[return-value]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attempt, flow_version_id, state_type, state_name FROM orchestration_flowrun "
            "WHERE id = %s AND workspace_id = %s FOR SHARE",
            [flow_run_id, workspace_id],
        )
        return cursor.fetchone()  # type: ignore[return-value]


def _task_runs(workspace_id: Any, flow_run_id: Any, keys: set[tuple[str, int]]) -> dict[tuple[str, int], TaskRun]:
    qs = (
        TaskRun.objects.for_workspace(workspace_id)
        .filter(flow_run_id=flow_run_id, task_key__in={k for k, _ in keys}, map_index__in={i for _, i in keys})
        .select_for_update()
        .order_by("task_key", "map_index")
    )
    return {(t.task_key, t.map_index): t for t in qs if (t.task_key, t.map_index) in keys}


@transaction.atomic
def task_run_report_batch(
    *, actor: Principal, flow_run: FlowRun, attempt: int, reports: list[dict[str, Any]]
) -> list[OrchestrationResult]:
    """Apply task-run state reports of ``flow_run``'s ``attempt`` in order; one result per report
    (ACCEPT, REJECT/WAIT with a reason, or ABORT for a stale ``expected_version``). A stale
    ``attempt`` refuses the whole batch with 409 ``stale_attempt``, and so does a run that has
    ended with 409 ``run_not_held``; either changes nothing (D2)."""
    if flow_run.workspace_id != actor.workspace.pk:
        raise NotFound()
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise InvalidInput("attempt must be an integer.", details={"attempt": ["Invalid."]})
    clean = _validate(reports)
    workspace_id = actor.workspace.pk
    with workspace_scope([workspace_id]):
        authorize(actor, "flow_run:report_state", flow_run)
        locked = _lock_flow_run(workspace_id, flow_run.pk)
        if locked is None:
            raise NotFound()
        current_attempt, version_id, flow_run_state, flow_run_state_name = locked
        if attempt != current_attempt:
            raise Conflict(stale_attempt_reason(attempt, current_attempt), code="stale_attempt",
                           details={"attempt": current_attempt})
        if flow_run_state in TERMINAL_STATES:
            raise Conflict(run_not_held_reason(flow_run_state_name), code="run_not_held",
                           details={"attempt": current_attempt, "state_type": flow_run_state,
                                    "state_name": flow_run_state_name})
        specs = FlowVersion.objects.for_workspace(workspace_id).filter(pk=version_id).values_list(
            "tasks", flat=True).first() or []
        tasks = {t.get("key"): t for t in specs if isinstance(t, dict)}
        keys = {(r["task_key"], r["map_index"]) for r in clean}
        runs = _task_runs(workspace_id, flow_run.pk, keys)
        missing = keys - set(runs)
        now = db_now()
        if missing:
            TaskRun.objects.unscoped().bulk_create(
                [
                    TaskRun(workspace_id=workspace_id, flow_run_id=flow_run.pk, task_key=key, map_index=index,
                            tags=[t for t in tasks.get(key, {}).get("tags", []) if isinstance(t, str)],
                            flow_run_attempt=current_attempt, state_timestamp=now, created_at=now)
                    for key, index in sorted(missing)
                ],
                ignore_conflicts=True,  # a concurrent batch may create the same task run
            )
            runs.update(_task_runs(workspace_id, flow_run.pk, missing))
        cache: dict[str, Any] = {"version_tasks": tasks, "flow_run_state": flow_run_state}
        policy = TaskPolicy()
        history: list[TaskRunState] = []
        changed: dict[Any, tuple[TaskRun, set[str]]] = {}
        results: list[OrchestrationResult] = []
        for report in clean:
            run = runs[(report["task_key"], report["map_index"])]
            expected = report["expected_version"]
            if expected is not None and expected != run.state_version:
                results.append(OrchestrationResult(
                    status=SetStateStatus.ABORT, state_type=run.state_type, state_name=run.state_name,
                    state_version=run.state_version, run_id=run.pk, attempt=run.attempt,
                    reason="The task run's state changed since you read it; re-read and retry.",
                    details={"code": "stale_state_version"},
                ))
                continue
            context = Context(
                run=run, actor=actor, now=now, cache=cache, attempt=current_attempt,
                proposed=ProposedState(type=report["state_type"], name=report["state_name"],
                                       message=report["message"], result_ref=report["result_ref"]),
            )
            policy.apply(context)
            if context.status is SetStateStatus.ACCEPT and not context.unchanged:
                history.append(history_row(run, context.proposed, TaskRunState, "task_run", now))
                apply_accepted(run, context)
                changed.setdefault(run.pk, (run, set()))[1].update(context.updates)
                policy.after(context)
            results.append(OrchestrationResult(
                status=context.status, state_type=run.state_type, state_name=run.state_name,
                state_version=run.state_version, reason=context.reason, details=context.details,
                run_id=run.pk, attempt=run.attempt,
            ))
        if history:
            TaskRunState.objects.unscoped().bulk_create(history, batch_size=2000)
            _bulk_update([run for run, _ in changed.values()])
            publish(
                workspace_id=workspace_id,
                type="task_run.states_changed",
                data={"flow_run_id": str(flow_run.pk), "task_runs": [
                    {"id": str(run.pk), "task_key": run.task_key, "map_index": run.map_index,
                     "state_type": run.state_type, "state_name": run.state_name}
                    for run, _ in list(changed.values())[:500]
                ]},
                flow_run_id=flow_run.pk,
            )
        return results


def _bulk_update(runs: list[TaskRun]) -> None:
    if not settings.IS_POSTGRES:
        TaskRun.objects.unscoped().bulk_update(runs, _UPDATE_FIELDS, batch_size=500)
        return
    row = ("(%s::uuid, %s, %s, %s, %s::timestamptz, %s::integer, %s, %s::integer, %s::timestamptz, %s::timestamptz, "
           "%s::integer)")
    for start in range(0, len(runs), 1000):
        chunk = runs[start:start + 1000]
        params: list[Any] = []
        for r in chunk:
            params += [r.pk, r.state_type, r.state_name, r.state_message, r.state_timestamp, r.state_version,
                       r.result_ref, r.attempt, r.start_time, r.end_time, r.flow_run_attempt]
        sets = ", ".join(f"{f} = v.{f}" for f in _UPDATE_FIELDS)
        sql = (
            f"UPDATE orchestration_taskrun AS t SET {sets} FROM (VALUES {', '.join([row] * len(chunk))}) "  # noqa: S608
            f"AS v(id, {', '.join(_UPDATE_FIELDS)}) WHERE t.id = v.id AND t.workspace_id = %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, runs[0].workspace_id])
