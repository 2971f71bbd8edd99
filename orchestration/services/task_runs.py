"""Task-run states reported by agents, many at once: the service checks the input, the actor's
right to report for the run and its workspace, then hands the batch to the engine
(:func:`orchestration.engine.task_run_set_states`, which documents how a batch is applied and when
it is refused whole).
"""

from __future__ import annotations

from typing import Any

from accounts.authz import Principal, authorize
from core.errors import InvalidInput
from core.tenancy import workspace_scope
from core.transactions import atomic_service
from orchestration.engine import OrchestrationResult, ProposedState, TaskRunReport, task_run_set_states
from orchestration.models import STATE_TYPES, StateType

MAX_REPORTS = 5_000
MAX_MESSAGE = 10_000
MAX_RESULT_REF = 1_000
MAX_KEY = 200
_REPORT_FIELDS = {"task_key", "map_index", "state_type", "state_name", "message", "result_ref", "expected_version"}


def _validate(reports: Any) -> list[TaskRunReport]:
    if not isinstance(reports, list) or not reports:
        raise InvalidInput("reports must be a non-empty list.", details={"reports": ["Invalid."]})
    if len(reports) > MAX_REPORTS:
        raise InvalidInput(f"At most {MAX_REPORTS} reports per batch ({len(reports)} given).",
                           code="batch_too_large", details={"reports": [f"At most {MAX_REPORTS}."]})
    errors: dict[str, list[str]] = {}
    clean: list[tuple[Any, ...]] = []
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
        if state_type not in STATE_TYPES:
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
        clean.append((key, index, expected, state_type, name, message, ref))
    if errors:
        first = next(iter(errors.items()))
        raise InvalidInput(f"{first[0]}: {first[1][0]}", code="invalid_report", details=errors)
    return [
        TaskRunReport(task_key=key, map_index=index, expected_version=expected,
                      state=ProposedState(type=state_type, name=name, message=message, result_ref=ref))
        for key, index, expected, state_type, name, message, ref in clean
    ]


@atomic_service  # a refused batch (409) rolls back whatever it wrote before the refusal
def task_run_report_batch(
    *, actor: Principal, flow_run_id: Any, attempt: int, reports: list[dict[str, Any]]
) -> list[OrchestrationResult]:
    """Apply task-run state reports of the flow run ``flow_run_id``'s ``attempt`` in order; one
    result per report (ACCEPT, or REJECT/WAIT with a reason). Refused whole with 409, changing
    nothing (D2, D3): a stale ``attempt`` (``stale_attempt``), a run that has ended
    (``run_not_held``) or a stale ``expected_version`` in any report (``stale_state_version``).
    A run that is not the actor's workspace's is not found (the engine reads it in that workspace
    only, under its lock)."""
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise InvalidInput("attempt must be an integer.", details={"attempt": ["Invalid."]})
    clean = _validate(reports)
    with workspace_scope([actor.workspace.pk]):
        # A run is not a restricted object: reporting for it is the actor's role in the workspace.
        authorize(actor, "flow_run:report_state", actor.workspace)
        return task_run_set_states(actor=actor, workspace_id=actor.workspace.pk, flow_run_id=flow_run_id,
                                   attempt=attempt, reports=clean)
