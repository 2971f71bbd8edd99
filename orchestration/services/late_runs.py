"""Late runs and the late-run (catch-up) policy: two platform ticks.

:func:`mark_late_runs` renames SCHEDULED runs whose start passed (by :data:`LATE_GRACE`, on the
database clock, D6) and that nobody started to SCHEDULED "Late", so the UI and SLAs can see them.

:func:`apply_catchup_policy` decides what happens to runs that piled up while no agent claimed them
(an outage), per flow (``Flow.catchup`` and ``Flow.max_lateness_seconds``):

- ``max_lateness_seconds``: a due run later than that ends COMPLETED "Skipped" with the reason;
- ``latest``: only the newest due run of each schedule stays claimable, the older ones end Skipped;
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
Since no other pass decides a flow that one holds, the holder comes back (within about a second) to
due runs another transaction held when it looked, such as a late-marking batch.

A claim does not wait for the next pass: :func:`skip_stale_claims` applies the same policy to the
runs a claim is about to take, in the claim's transaction (agents back seconds after a start would
otherwise run the stale run and the newest one). ``latest`` keeps the newest due run of each
schedule, in any state — a newer run an agent already holds makes the older ones stale — so two
claimers, each holding one of two due runs, never both run.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, Q, Subquery

from accounts.authz import NotFound
from core.errors import ServiceError
from core.tenancy import rls_bypass, workspace_scope
from orchestration.engine import ProposedState, SetStateStatus, db_now, flow_run_set_state
from orchestration.models import Catchup, Flow, FlowRun, Schedule, StateType

from .scheduler import CATCHUP_GRACE

logger = logging.getLogger(__name__)

LATE_GRACE = timedelta(seconds=15)
BATCH_SIZE = 200
MAX_BATCHES_PER_TICK = 50
# Oldest first: a cut-off batch keeps its newest run, and the next tick finishes the job.
MAX_RUNS_PER_FLOW = 5000
# A flow whose due runs another transaction held is looked at again this many times, this far apart.
CATCHUP_RETRIES = 20
CATCHUP_RETRY_SECONDS = 0.05
LATE_NAME = "Late"
SCHEDULED_NAME = "Scheduled"
SKIPPED_NAME = "Skipped"
AWAITING_RETRY_NAME = "AwaitingRetry"


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


def skip_reason(*, start: datetime, scheduled: bool, catchup: str, max_lateness: int | None, now: datetime,
                newest: datetime | None) -> str | None:
    """Why the flow's late-run policy skips a due, never-started run, or None when it may run.
    ``scheduled``: a schedule created it (the catch-up policy is about missed *scheduled* runs; a
    run someone started by hand is only subject to the maximum lateness). ``newest``: the start of
    the newest due run of the same schedule (``latest`` keeps only that one)."""
    if max_lateness is not None and start < now - timedelta(seconds=max_lateness):
        return (f"Skipped: the run was due at {start.isoformat()}, more than the flow's maximum lateness "
                f"of {max_lateness} s ago.")
    if not scheduled:
        return None
    if catchup == Catchup.NONE and start < now - CATCHUP_GRACE:
        return (f"Skipped by catch-up policy 'none': the run was due at {start.isoformat()} and was not "
                f"started within {int(CATCHUP_GRACE.total_seconds())} s.")
    if catchup == Catchup.LATEST and newest is not None and start < newest:
        return f"Skipped by catch-up policy 'latest': a newer run is due (at {newest.isoformat()})."
    return None


def newest_due(schedule_ids: set[Any], *, at: Any, workspace_id: Any = None) -> dict[Any, datetime]:
    """Per schedule, the start of its newest run due by ``at`` (a datetime or ``Now()``), in any
    state: a newer run an agent already holds still makes the older ones stale. One index probe per
    schedule on the unique (schedule, scheduled_start) index, however many runs it has."""
    ids = {pk for pk in schedule_ids if pk is not None}
    if not ids:
        return {}
    runs = FlowRun.objects.unscoped() if workspace_id is None else FlowRun.objects.for_workspace(workspace_id)
    schedules = Schedule.objects.unscoped() if workspace_id is None else Schedule.objects.for_workspace(workspace_id)
    newest = runs.filter(schedule_id=OuterRef("pk"), scheduled_start__lte=at).order_by("-scheduled_start")
    rows = schedules.filter(pk__in=ids).annotate(newest=Subquery(newest.values("scheduled_start")[:1]))
    return {pk: start for pk, start in rows.values_list("pk", "newest") if start is not None}


def _decide(flow_runs: list[tuple[Any, Any, datetime, bool, Any]], *, catchup: str, max_lateness: int | None,
            now: datetime, newest: dict[Any, datetime] | None = None) -> list[tuple[Any, Any, ProposedState]]:
    """The runs of one flow to skip, each with its reason. ``flow_runs`` are (id, workspace id,
    scheduled start, created by a schedule, schedule id) of its due, unclaimed runs, oldest first;
    ``newest`` the newest due start per schedule (:func:`newest_due`). ``latest`` keeps the newest
    due run of each schedule (runs whose schedule is gone count as one schedule)."""
    newest = dict(newest or {})
    for _pk, _ws, start, scheduled, schedule_id in flow_runs:
        if scheduled and (schedule_id not in newest or newest[schedule_id] < start):
            newest[schedule_id] = start
    decisions: list[tuple[Any, Any, ProposedState]] = []
    for pk, workspace_id, start, scheduled, schedule_id in flow_runs:
        reason = skip_reason(start=start, scheduled=scheduled, catchup=catchup, max_lateness=max_lateness,
                             now=now, newest=newest.get(schedule_id))
        if reason is not None:
            decisions.append((pk, workspace_id, _skip(reason)))
    return decisions


def skip_stale_claims(runs: list[FlowRun], *, workspace_id: Any) -> set[Any]:
    """The late-run policy applied by a claim, in the claim's transaction: of the due runs the
    claim has locked (``runs``, read with their flow's ``catchup`` and ``max_lateness_seconds``),
    skip those their flow's policy does not let run — COMPLETED "Skipped" through the engine, with
    the reasons the catch-up pass gives — and, for each schedule concerned, the other stale runs it
    still has (locked with SKIP LOCKED), so that agents back seconds after a start never run what
    the next catch-up pass would have skipped. Returns the ids of ``runs`` the claim must not take.
    No query when no candidate's flow has a policy (``catchup="all"``, no maximum lateness)."""
    run_ids = [run.pk for run in runs]
    policed = [
        (run.pk, run.scheduled_start, run.created_by_kind, run.schedule_id, run.flow.catchup,
         run.flow.max_lateness_seconds)
        for run in runs
        if run.start_time is None
        and run.state_name != AWAITING_RETRY_NAME  # a retry is not a missed run
        and (run.flow.catchup in (Catchup.LATEST, Catchup.NONE) or run.flow.max_lateness_seconds is not None)
    ]
    if not policed:
        return set()
    at = db_now()  # the transaction's start on PostgreSQL: the instant the claim found them due
    newest = newest_due({row[3] for row in policed if row[4] == Catchup.LATEST}, at=at, workspace_id=workspace_id)
    stale: set[Any] = set()
    sweep: dict[Any, tuple[str, int | None]] = {}
    for pk, start, created_by, schedule_id, catchup, max_lateness in policed:
        scheduled = created_by == FlowRun.CreatedBy.SCHEDULE
        reason = skip_reason(start=start, scheduled=scheduled, catchup=catchup, max_lateness=max_lateness, now=at,
                             newest=newest.get(schedule_id))
        if reason is None:
            continue
        stale.add(pk)  # not claimed even if the engine refuses the skip: the policy says it must not run
        _propose(pk, workspace_id, _skip(reason))
        if scheduled and schedule_id is not None:
            sweep[schedule_id] = (catchup, max_lateness)
    for schedule_id, (catchup, max_lateness) in sweep.items():
        siblings = FlowRun.objects.for_workspace(workspace_id).filter(
            _due_unclaimed(at), schedule_id=schedule_id, created_by_kind=FlowRun.CreatedBy.SCHEDULE
        )
        if catchup == Catchup.LATEST and schedule_id in newest:
            siblings = siblings.filter(scheduled_start__lt=newest[schedule_id])  # leave the one that runs alone
        siblings = (
            siblings
            .exclude(state_name=AWAITING_RETRY_NAME)
            .exclude(pk__in=run_ids)
            .order_by("scheduled_start")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "scheduled_start")[:MAX_RUNS_PER_FLOW]
        )
        for pk, start in siblings:
            reason = skip_reason(start=start, scheduled=True, catchup=catchup, max_lateness=max_lateness, now=at,
                                 newest=newest.get(schedule_id))
            if reason is not None:
                _propose(pk, workspace_id, _skip(reason))
    return stale


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
    skipped = 0
    for attempt in range(CATCHUP_RETRIES + 1):
        if attempt:
            time.sleep(CATCHUP_RETRY_SECONDS)
        outcomes = [(flow_id, _catch_up_flow(flow_id, now=now)) for flow_id in flow_ids]
        skipped += sum(count for _, (count, _) in outcomes)
        # A flow some of whose due runs another transaction held (a late-marking batch, a claim)
        # is looked at again: no other pass will, since this one held the flow.
        flow_ids = [flow_id for flow_id, (_, complete) in outcomes if not complete]
        if not flow_ids:
            break
    return skipped


def _due_unclaimed(at: datetime) -> Q:
    return Q(state_type=StateType.SCHEDULED, agent__isnull=True, start_time__isnull=True, scheduled_start__lte=at)


@transaction.atomic
def _catch_up_flow(flow_id: Any, *, now: datetime | None) -> tuple[int, bool]:
    """Apply the policy to one flow's due runs: (how many were skipped, whether every due run was
    seen). Another pass holding the flow counts as seen: that pass decides it."""
    with rls_bypass():
        # One pass per flow at a time: a pass that saw only part of a flow's runs (the rest locked
        # by another pass) could keep two "newest" runs. Another pass holding the flow handles it.
        flow = Flow.objects.unscoped().filter(pk=flow_id).select_for_update(skip_locked=True, no_key=True).first()
        if flow is None:
            return 0, True
        at = now or db_now()
        due = FlowRun.objects.unscoped().filter(_due_unclaimed(at), flow_id=flow_id)
        rows = list(due.order_by("scheduled_start", "pk").select_for_update(skip_locked=True, of=("self",))
                    [:MAX_RUNS_PER_FLOW])
        complete = len(rows) >= MAX_RUNS_PER_FLOW or len(rows) == due.count()
        if not rows:
            return 0, complete
        newest = newest_due({r.schedule_id for r in rows}, at=at) if flow.catchup == Catchup.LATEST else {}
        decisions = _decide(
            [(r.pk, r.workspace_id, r.scheduled_start, r.created_by_kind == FlowRun.CreatedBy.SCHEDULE, r.schedule_id)
             for r in rows],
            catchup=flow.catchup, max_lateness=flow.max_lateness_seconds, now=at, newest=newest,
        )
        return _apply(decisions), complete
