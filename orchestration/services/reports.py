"""Combined agent reports: what the flow-run process has to say about one run attempt, in one request.

A report carries any of a heartbeat (the lease), task-run states, log lines and a flow-run state,
each exactly what its own endpoint takes, and applies them in one transaction in that order: the
lease first (a RUNNING proposal with the first heartbeat finds the run still held), task runs before
the log lines that name them, the flow state last (its final state after the last task states and
logs, as the separate requests would have arrived). Each part is the existing service, so the rules
are the same; an error in any part (a stale attempt, an invalid line) raises and nothing is written.
A WAIT, REJECT or ABORT of the flow state is an answer, not an error: the other parts stay applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import transaction

from accounts.authz import NotFound, Principal, authorize
from core.errors import InvalidInput
from core.tenancy import workspace_scope
from core.transactions import rolled_back_whole
from orchestration.engine import OrchestrationResult, ProposedState, flow_run_set_state
from orchestration.models import FlowRun
from orchestration.services import heartbeats, logs, task_runs

T = TypeVar("T")


@dataclass(frozen=True)
class ReportOutcome:
    """The answer of each part the report carried (None: the part was not sent)."""

    heartbeat: dict[str, Any] | None = None
    task_runs: list[OrchestrationResult] | None = None
    logs: int | None = None
    state: OrchestrationResult | None = None


def _part(name: str, call: Callable[[], T]) -> T:
    """Run one part; its input errors name the part (``logs: Log line 3: …``)."""
    try:
        return call()
    except InvalidInput as exc:
        raise type(exc)(f"{name}: {exc.message}", code=exc.code, details={name: exc.details}) from None


# No savepoint of its own: an error in any part must roll back the caller's transaction (the
# request's) whole, and a savepoint pair is two more statements on every report.
@transaction.atomic(savepoint=False)
def flow_run_report(
    *,
    actor: Principal,
    flow_run: FlowRun,
    attempt: int,
    lease_seconds: int | None = None,
    task_run_reports: list[dict[str, Any]] | None = None,
    log_lines: list[dict[str, Any]] | None = None,
    state: ProposedState | None = None,
    expected_version: int | None = None,
) -> ReportOutcome:
    """Apply the parts given (``lease_seconds`` is the heartbeat part) for ``attempt`` of
    ``flow_run`` in order: heartbeat, task runs, logs, flow state. Each part authorizes its own
    action (``flow_run:report_state``; ``log:write`` for the lines)."""
    if flow_run.workspace_id != actor.workspace.pk:
        raise NotFound()
    with workspace_scope([flow_run.workspace_id]), rolled_back_whole():
        beat = None
        if lease_seconds is not None:
            beat = _part("heartbeat", lambda: heartbeats.flow_run_heartbeat(
                actor=actor, flow_run_id=flow_run.pk, attempt=attempt, lease_seconds=lease_seconds))
        results = None
        if task_run_reports is not None:
            reports = task_run_reports
            results = _part("task_runs", lambda: task_runs.task_run_report_batch(
                actor=actor, flow_run_id=flow_run.pk, attempt=attempt, reports=reports))
        count = None
        if log_lines is not None:
            lines = log_lines
            count = _part("logs", lambda: logs.logs_ingest(actor=actor, flow_run=flow_run, lines=lines))
        answer = None
        if state is not None:
            proposed = state
            authorize(actor, "flow_run:report_state", flow_run)
            answer = _part("state", lambda: flow_run_set_state(
                actor=actor, flow_run_id=flow_run.pk, workspace_id=flow_run.workspace_id, state=proposed,
                expected_version=expected_version, attempt=attempt))
    return ReportOutcome(heartbeat=beat, task_runs=results, logs=count, state=answer)
