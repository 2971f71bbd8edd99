"""Late runs and the late-run (catch-up) policy: two platform ticks.

:func:`mark_late_runs` renames SCHEDULED runs whose start passed (by :data:`LATE_GRACE`, on the
database clock, D6) and that nobody started to SCHEDULED "Late", so the UI and SLAs can see them.

:func:`apply_catchup_policy` decides what happens to runs that piled up while no agent claimed them
(an outage), per flow (``Flow.catchup`` and ``Flow.max_lateness_seconds``):

- ``max_lateness_seconds``: a due run later than that ends COMPLETED "Skipped" with the reason;
- ``latest``: only the newest due scheduled run stays claimable, the older ones end Skipped;
- ``none``: every scheduled run due more than
  :data:`~orchestration.services.scheduler.CATCHUP_GRACE` ago ends Skipped;
- ``all``: runs are left alone.

``latest`` and ``none`` concern runs the flow's schedules created; a run started by hand or through
the API is subject only to ``max_lateness_seconds``. Runs waiting for a retry (they started once)
are left alone.

So after an hour down on a one-minute schedule with ``latest``, exactly one run is claimable.
Every change goes through the engine's entry point (:func:`orchestration.engine.flow_run_set_state`);
a proposal the rules refuse (e.g. the run moved on meanwhile) is counted out and logged, never forced.
Both ticks lock the runs they look at with ``FOR UPDATE SKIP LOCKED`` and re-check them under the
lock (the catch-up pass first takes the flow's row the same way, so one pass at a time decides a
flow), so concurrent ticks (and claims) never act twice on one run, and a second pass does nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q

from accounts.authz import NotFound
from core.errors import ServiceError
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state
from orchestration.models import Catchup, Flow, FlowRun, StateType

from .scheduler import CATCHUP_GRACE, db_now

logger = logging.getLogger(__name__)

LATE_GRACE = timedelta(seconds=15)
BATCH_SIZE = 200
MAX_BATCHES_PER_TICK = 50
# Oldest first: a cut-off batch keeps its newest run, and the next tick finishes the job.
MAX_RUNS_PER_FLOW = 5000
LATE_NAME = "Late"
SCHEDULED_NAME = "Scheduled"
SKIPPED_NAME = "Skipped"


def _propose(run_id: Any, workspace_id: Any, state: ProposedState) -> bool:
    """Propose a state through the engine in a savepoint; True when it was accepted. A refusal or
    an error leaves the run as it was and the surrounding batch intact."""
    try:
        with transaction.atomic():
            result = flow_run_set_state(actor=None, flow_run_id=run_id, workspace_id=workspace_id, state=state)
    except (ServiceError, NotFound):
        logger.info("run %s: %s %r refused by the engine", run_id, state.type, state.name, exc_info=True)
        return False
    if result.status is not SetStateStatus.ACCEPT:
        logger.info("run %s: %s %r not accepted (%s: %s)", run_id, state.type, state.name, result.status,
                    result.reason)
        return False
    return True


def _apply(decisions: list[tuple[Any, Any, ProposedState]]) -> int:
    """Propose each (run id, workspace id, state), scoped to the run's workspace."""
    by_workspace: dict[Any, list[tuple[Any, ProposedState]]] = defaultdict(list)
    for run_id, workspace_id, state in decisions:
        by_workspace[workspace_id].append((run_id, state))
    accepted = 0
    for workspace_id, items in by_workspace.items():
        with workspace_scope([workspace_id]):
            for run_id, state in items:
                accepted += _propose(run_id, workspace_id, state)
    return accepted


def mark_late_runs(*, now: datetime | None = None, grace: timedelta = LATE_GRACE) -> int:
    """Rename due, unstarted SCHEDULED runs to "Late"; return how many were marked. ``now``
    defaults to the database clock."""
    marked = 0
    for _ in range(MAX_BATCHES_PER_TICK):
        count, seen = _mark_late_batch(now=now, grace=grace)
        marked += count
        # Drained, or the engine kept a whole batch as it was (it is retried next tick, not here).
        if seen < BATCH_SIZE or count == 0:
            break
    return marked


@transaction.atomic
def _mark_late_batch(*, now: datetime | None, grace: timedelta) -> tuple[int, int]:
    with rls_bypass():
        threshold = (now or db_now()) - grace
        rows = list(
            FlowRun.objects.unscoped()
            # Only plain "Scheduled" runs: an AwaitingRetry run keeps its name (as in Prefect).
            .filter(state_type=StateType.SCHEDULED, state_name=SCHEDULED_NAME, scheduled_start__lt=threshold)
            .order_by("scheduled_start")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "workspace_id", "scheduled_start")[:BATCH_SIZE]
        )
        decisions = [
            (pk, workspace_id, ProposedState(
                type=StateType.SCHEDULED, name=LATE_NAME,
                message=f"The run was due at {start.isoformat()} and has not started yet.",
            ))
            for pk, workspace_id, start in rows
        ]
        return _apply(decisions), len(rows)


def _skip(reason: str) -> ProposedState:
    return ProposedState(type=StateType.COMPLETED, name=SKIPPED_NAME, message=reason)


def _decide(flow_runs: list[tuple[Any, Any, datetime, bool]], *, catchup: str, max_lateness: int | None,
            now: datetime) -> list[tuple[Any, Any, ProposedState]]:
    """The runs of one flow to skip, each with its reason. ``flow_runs`` are (id, workspace id,
    scheduled start, created by a schedule) of its due, unclaimed runs, oldest first. The catch-up
    policy is about missed *scheduled* runs: a run someone started by hand is only subject to the
    maximum lateness."""
    decisions: list[tuple[Any, Any, ProposedState]] = []
    kept: list[tuple[Any, Any, datetime]] = []
    for pk, workspace_id, start, scheduled in flow_runs:
        if max_lateness is not None and start < now - timedelta(seconds=max_lateness):
            decisions.append((pk, workspace_id, _skip(
                f"Skipped: the run was due at {start.isoformat()}, more than the flow's maximum lateness "
                f"of {max_lateness} s ago."
            )))
        elif not scheduled:
            continue
        elif catchup == Catchup.NONE and start < now - CATCHUP_GRACE:
            decisions.append((pk, workspace_id, _skip(
                f"Skipped by catch-up policy 'none': the run was due at {start.isoformat()} and was not "
                f"started within {int(CATCHUP_GRACE.total_seconds())} s."
            )))
        else:
            kept.append((pk, workspace_id, start))
    if catchup == Catchup.LATEST and kept:
        newest = kept[-1][2]
        decisions.extend(
            (pk, workspace_id, _skip(
                f"Skipped by catch-up policy 'latest': a newer run is due (at {newest.isoformat()})."
            ))
            for pk, workspace_id, start in kept
            if start < newest
        )
    return decisions


def apply_catchup_policy(*, now: datetime | None = None) -> int:
    """Apply each flow's late-run policy to its due, unclaimed runs; return how many were skipped.
    ``now`` defaults to the database clock."""
    with transaction.atomic(), rls_bypass():
        at = now or db_now()
        flow_ids = list(
            FlowRun.objects.unscoped()
            .filter(_due_unclaimed(at))
            .filter(Q(flow__catchup__in=[Catchup.LATEST, Catchup.NONE]) | Q(flow__max_lateness_seconds__isnull=False))
            .order_by()
            .values_list("flow_id", flat=True)
            .distinct()
        )
    return sum(_catch_up_flow(flow_id, now=now) for flow_id in flow_ids)


def _due_unclaimed(at: datetime) -> Q:
    return Q(state_type=StateType.SCHEDULED, agent__isnull=True, start_time__isnull=True, scheduled_start__lte=at)


@transaction.atomic
def _catch_up_flow(flow_id: Any, *, now: datetime | None) -> int:
    with rls_bypass():
        # One pass per flow at a time: a pass that saw only part of a flow's runs (the rest locked
        # by another pass) could keep two "newest" runs. Another pass holding the flow handles it.
        flow = Flow.objects.unscoped().filter(pk=flow_id).select_for_update(skip_locked=True, no_key=True).first()
        if flow is None:
            return 0
        at = now or db_now()
        rows = list(
            FlowRun.objects.unscoped()
            .filter(_due_unclaimed(at), flow_id=flow_id)
            .order_by("scheduled_start", "pk")
            .select_for_update(skip_locked=True, of=("self",))[:MAX_RUNS_PER_FLOW]
        )
        if not rows:
            return 0
        decisions = _decide(
            [(r.pk, r.workspace_id, r.scheduled_start, r.created_by_kind == FlowRun.CreatedBy.SCHEDULE) for r in rows],
            catchup=flow.catchup, max_lateness=flow.max_lateness_seconds, now=at,
        )
        return _apply(decisions)
