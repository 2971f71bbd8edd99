"""The lost-run reaper (Prefect 1's Lazarus and Zombie-killer, done right; D5).

A claimed run must start, and a started run's process must heartbeat, before its lease ends. Runs
in PENDING, RUNNING or CANCELLING whose lease ended before the database's ``now()`` (or that never
had a lease, one lease period after their state change) are proposed CRASHED, with a reason,
through the engine's entry point — which releases their concurrency slots in the same transaction
and, per the flow's ``max_crash_retries``, schedules a retry (the engine's crash-retry rule). Rows
are found across workspaces through the partial index ``flow_run_lease_idx`` and locked with SKIP
LOCKED, so two reapers at once never crash a run twice and never wait on each other or on a run
being reported. Run every few seconds (a platform tick): a run with no live lease is never left
PENDING/RUNNING/CANCELLING longer than its lease plus one tick.

An outage of the web tier is not the agents' death: agents heartbeat through it, so while it does
not answer (its beat, ``web_tier.py``, is stale) the reaper reaps nothing, and when it comes back
every lease has been moved on by the outage's length.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q

from core.tenancy import rls_bypass
from orchestration.engine import ProposedState, SetStateStatus, db_now, flow_run_set_state
from orchestration.models import FlowRun, StateType
from orchestration.services.heartbeats import HEARTBEAT_LEASE_SECONDS, LEASED_STATES
from orchestration.services.web_tier import web_tier_is_up

logger = logging.getLogger(__name__)

BATCH_SIZE = 100


def _policy() -> Any:
    from orchestration.engine.policies import ReaperPolicy

    return ReaperPolicy()


def _reason(state_type: str, lease_expires_at: datetime | None, now: datetime) -> str:
    if lease_expires_at is None:
        return (f"No lease: the run was {state_type} for over {HEARTBEAT_LEASE_SECONDS} s without an agent "
                "holding it or a flow-run process heartbeating.")
    if state_type == StateType.PENDING:
        return "Claimed but never started: the agent did not start the run before its lease ended."
    overdue = int((now - lease_expires_at).total_seconds())
    return f"No heartbeat from the flow-run process for {overdue} s past its lease."


def reap_lost_runs(*, now: datetime | None = None) -> int:
    """Crash every run whose lease ended before ``now`` (default: the database's now). Returns how
    many were crashed. Safe to run concurrently; takes no arguments, so it is its own Celery task."""
    total = 0
    while True:
        reaped, seen = _reap_batch(now)
        total += reaped
        # Stop when the backlog is drained, or when nothing in a full batch could be crashed (runs a
        # rule kept are retried on the next tick instead of spinning here).
        if seen < BATCH_SIZE or reaped == 0:
            return total


@transaction.atomic
def _reap_batch(now: datetime | None) -> tuple[int, int]:
    policy = _policy()
    reaped = 0
    with rls_bypass():
        cutoff = now or db_now()
        if not web_tier_is_up(cutoff):
            logger.info("The web tier is not answering: no run is reaped until it is back (agents cannot heartbeat)")
            return 0, 0
        rows = list(
            FlowRun.objects.unscoped()
            .filter(state_type__in=LEASED_STATES)
            .filter(
                # An active run that never got a lease (e.g. marked RUNNING by hand) gets one lease's
                # grace from its state change, then counts as lost too.
                Q(lease_expires_at__lt=cutoff)
                | Q(lease_expires_at__isnull=True,
                    state_timestamp__lt=cutoff - timedelta(seconds=HEARTBEAT_LEASE_SECONDS))
            )
            .order_by("lease_expires_at")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "workspace_id", "state_type", "lease_expires_at")[:BATCH_SIZE]
        )
        for run_id, workspace_id, state_type, lease_expires_at in rows:
            reason = _reason(state_type, lease_expires_at, cutoff)
            try:
                with transaction.atomic():  # a savepoint: one bad run leaves the batch intact
                    result = flow_run_set_state(
                        actor=None,
                        flow_run_id=run_id,
                        state=ProposedState(
                            type=StateType.CRASHED, name="Crashed", message=reason,
                            details={"reason": reason, "reaped_from": state_type,
                                     "lease_expires_at": lease_expires_at.isoformat() if lease_expires_at else None},
                        ),
                        workspace_id=workspace_id,
                        policy=policy,
                    )
            except Exception:
                # One bad run must not keep the others alive; its savepoint was rolled back.
                logger.exception("could not reap flow run %s", run_id)
                continue
            if result.status is SetStateStatus.ACCEPT:
                reaped += 1  # the engine cleared the lease (ClearLease) and released slots
            else:
                logger.warning("reaper's CRASHED for %s was %s: %s", run_id, result.status, result.reason)
    return reaped, len(rows)
