"""Flow-run heartbeats: the flow-run process extends its run's lease while it works (D2, D5).

The lease ends at the database's ``now()`` + the heartbeat's ``lease_seconds`` (default
:data:`HEARTBEAT_LEASE_SECONDS`; the agent's ``--lease`` makes a lost run come back sooner) — D6:
the process's clock plays no part. A heartbeat for an attempt that is no longer the run's current one, or for
a run that is no longer held (crashed by the reaper, finished, cancelled), is answered 409: the
agent must then stop that process, because the run has moved on without it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection

from accounts.authz import NotFound, Principal, authorize
from core.errors import Conflict, InvalidInput
from core.tenancy import workspace_scope
from core.transactions import atomic_service
from orchestration.engine.core import run_not_held_reason, stale_attempt_reason
from orchestration.models import FlowRun, StateType
from orchestration.services.claims import lease_until

# Processes heartbeat every ~15 s; a lease survives a few lost heartbeats.
HEARTBEAT_LEASE_SECONDS = 60
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 10, 3600
LEASED_STATES = (StateType.PENDING, StateType.RUNNING, StateType.CANCELLING)


class StaleAttempt(Conflict):
    code = "stale_attempt"


@atomic_service
def flow_run_heartbeat(
    *, actor: Principal, flow_run_id: Any, attempt: int, lease_seconds: int = HEARTBEAT_LEASE_SECONDS
) -> dict[str, Any]:
    """Extend the lease of the run ``flow_run_id`` (of the actor's workspace) for ``attempt``.
    Returns ``{"cancellation_requested", "lease_expires_at", "state_type", "attempt"}``; a stale
    attempt or a run that is no longer held (``run_not_held``) → 409, and the agent stops the run;
    no such run in the workspace → 404. The run is not read first: the lease's UPDATE finds it (a
    heartbeat is one statement), and only a refusal reads it, to say why."""
    authorize(actor, "flow_run:report_state", actor.workspace)  # an agent action: not per project
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int) or not (
        MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS
    ):
        raise InvalidInput(f"lease_seconds must be between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS}.",
                           details={"lease_seconds": ["Invalid."]})
    workspace_id = actor.workspace.pk
    with workspace_scope([workspace_id]):
        extended = _extend_lease(workspace_id, flow_run_id, attempt, lease_seconds) if settings.IS_POSTGRES else None
        if extended is not None:
            return extended
        # Refused, or not on PostgreSQL: read the run under its lock to say why (or extend it here).
        run = FlowRun.objects.for_workspace(workspace_id).select_for_update().filter(pk=flow_run_id).first()
        if run is None:
            raise NotFound()
        if attempt != run.attempt:
            raise StaleAttempt(
                stale_attempt_reason(attempt, run.attempt),  # the state rule's wording: they race
                details={"attempt": run.attempt, "state_type": run.state_type, "state_name": run.state_name},
            )
        if run.state_type not in LEASED_STATES:
            raise StaleAttempt(
                run_not_held_reason(run.state_name),
                code="run_not_held",
                details={"attempt": run.attempt, "state_type": run.state_type, "state_name": run.state_name},
            )
        FlowRun.objects.for_workspace(run.workspace_id).filter(pk=run.pk).update(
            lease_expires_at=lease_until(lease_seconds)
        )
        run.refresh_from_db(fields=["lease_expires_at"])
    assert run.lease_expires_at is not None
    return _reply(run.lease_expires_at, run.cancellation_requested, run.state_type, run.attempt)


def _reply(lease_expires_at: Any, cancellation_requested: bool, state_type: str, attempt: int) -> dict[str, Any]:
    return {
        "cancellation_requested": cancellation_requested or state_type == StateType.CANCELLING,
        "lease_expires_at": lease_expires_at.isoformat(),
        "state_type": state_type,
        "attempt": attempt,
    }


def _extend_lease(workspace_id: Any, flow_run_id: Any, attempt: int, lease_seconds: int) -> dict[str, Any] | None:
    """The heartbeat of a run held for ``attempt`` as one statement (the run's row locked by the
    UPDATE as by a locked read); None when the run is not (another attempt, no longer held, gone):
    the caller then reads it to say why."""
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE "orchestration_flowrun" SET "lease_expires_at" = statement_timestamp() '
            '+ make_interval(secs => %s) WHERE "workspace_id" = %s AND "id" = %s AND "attempt" = %s '
            'AND "state_type" = ANY(%s) RETURNING "lease_expires_at", "cancellation_requested", "state_type"',
            [lease_seconds, workspace_id, flow_run_id, attempt, [str(s) for s in LEASED_STATES]],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    lease_expires_at, cancellation_requested, state_type = row
    return _reply(lease_expires_at, cancellation_requested, state_type, attempt)
