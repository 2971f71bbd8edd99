"""The scheduler tick: one platform job expands every active schedule of every workspace into runs
(never one beat entry per customer schedule).

Each tick materialises, per schedule, the next runs ahead — ``horizon_runs`` (10) runs or
``horizon`` (1 hour) ahead, whichever comes first — plus the runs missed while the scheduler itself
was down, as far as the flow's late-run policy allows (D7: no catch-up storm):

- never before the schedule was created or last changed (a resumed schedule does not catch up on
  its pause) and never before the newest run it already has (a deleted run is not re-created);
- ``catchup="all"``: missed runs of the last :data:`MAX_BACKFILL` (capped by ``max_lateness``),
  at most :data:`MAX_BACKFILL_RUNS` of them; ``"latest"``: only the newest missed run;
  ``"none"``: none older than :data:`CATCHUP_GRACE`.

Runs are inserted with ``bulk_create(ignore_conflicts=True)`` on the unique (schedule,
scheduled_start) constraint, so two ticks at once never duplicate a run; each tick also locks the
schedules it expands with ``FOR NO KEY UPDATE SKIP LOCKED``, so concurrent ticks split the work and
a schedule being edited (``schedule_update`` holds ``FOR UPDATE``) is left to the next tick. Work
is done in batches of :data:`BATCH_SIZE` schedules, each in its own transaction with a fixed
number of queries, so thousands of schedules cost a bounded number of round trips.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Q

from core.errors import InvalidInput
from core.tenancy import rls_bypass
from orchestration.engine import db_now, insert_scheduled_runs, new_scheduled_run
from orchestration.models import Catchup, Flow, FlowRun, FlowVersion, Schedule
from orchestration.schedules import occurrences
from orchestration.selectors.flows import flow_versions_for_new_runs

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_BACKFILL = timedelta(hours=1)
MAX_BACKFILL_RUNS = 100
# A grid denser than this (an RRULE with FREQ=SECONDLY) is cut off when looking back.
_MAX_PAST_OCCURRENCES = 5000
# Runs due within this much of the tick are "now", even under catchup="none".
CATCHUP_GRACE = timedelta(seconds=30)
_EPSILON = timedelta(microseconds=1)


def schedule_due_runs(
    *,
    now: datetime | None = None,
    horizon_runs: int = 10,
    horizon: timedelta = timedelta(hours=1),
    batch_size: int = BATCH_SIZE,
) -> int:
    """Materialise upcoming runs of every active schedule; return how many runs were created.
    ``now`` (default: the database clock) is the instant the tick plans from. Safe to run
    concurrently and repeatedly."""
    created = 0
    after_id: Any = None
    while True:
        count, after_id = _tick_batch(
            now=now, horizon_runs=horizon_runs, horizon=horizon, after_id=after_id, batch_size=batch_size
        )
        created += count
        if after_id is None:
            return created


def _lookback(flow: Flow, tick_now: datetime) -> datetime:
    """The earliest missed start the flow's late-run policy lets the tick create."""
    window = MAX_BACKFILL
    if flow.catchup == Catchup.NONE:
        window = CATCHUP_GRACE
    if flow.max_lateness_seconds is not None:
        window = min(window, timedelta(seconds=flow.max_lateness_seconds))
    return tick_now - window


def _planned_starts(
    schedule: Schedule, *, tick_now: datetime, newest: datetime | None, future_count: int,
    horizon_runs: int, horizon: timedelta,
) -> list[datetime]:
    flow = schedule.flow
    lower = max(schedule.created_at, schedule.updated_at, _lookback(flow, tick_now))
    if newest is not None:
        lower = max(lower, newest + _EPSILON)
    past: list[datetime] = []
    if lower <= tick_now:
        past = occurrences(schedule, after=lower, until=tick_now, limit=_MAX_PAST_OCCURRENCES)
        if flow.catchup == Catchup.LATEST:
            past = past[-1:]
        past = past[-MAX_BACKFILL_RUNS:]
    wanted = horizon_runs - future_count
    future: list[datetime] = []
    if wanted > 0:
        future = occurrences(
            schedule, after=max(lower, tick_now + _EPSILON), until=tick_now + horizon, limit=wanted
        )
    return past + future


def _defaults(version: FlowVersion) -> dict[str, Any]:
    return {
        p["name"]: p["default"]
        for p in version.parameters
        if isinstance(p, dict) and "name" in p and "default" in p
    }


def _run_name(flow_name: str, start: datetime) -> str:
    return f"{flow_name[:170]}-{start:%Y%m%d-%H%M%S}"


@transaction.atomic
def _tick_batch(
    *, now: datetime | None, horizon_runs: int, horizon: timedelta, after_id: Any, batch_size: int
) -> tuple[int, Any]:
    """Expand one batch of schedules; return (runs created, the last schedule id or None at the end)."""
    with rls_bypass():
        clock = db_now()
        tick_now = now or clock
        candidates = (
            Schedule.objects.unscoped()
            .filter(is_active=True, flow__is_archived=False)
            .filter(Q(end_date__isnull=True) | Q(end_date__gte=tick_now - MAX_BACKFILL))
            .select_related("flow")
            .order_by("pk")
        )
        if after_id is not None:
            candidates = candidates.filter(pk__gt=after_id)
        # Another tick expanding (or an edit of) a schedule holds its row: skip it this time.
        schedules = list(candidates.select_for_update(skip_locked=True, no_key=True, of=("self",))[:batch_size])
        if not schedules:
            return 0, None
        next_after = schedules[-1].pk if len(schedules) == batch_size else None

        # The run's version and defaults are all a tick reads of a version (not its task graph).
        versions = flow_versions_for_new_runs([s.flow for s in schedules], only=("parameters", "labels"))
        stats = {
            row["schedule_id"]: row
            for row in FlowRun.objects.unscoped()
            .filter(schedule_id__in=[s.pk for s in schedules])
            .values("schedule_id")
            .annotate(newest=Max("scheduled_start"), future=Count("pk", filter=Q(scheduled_start__gt=tick_now)))
        }

        runs: list[FlowRun] = []
        for schedule in schedules:
            flow = schedule.flow
            version = versions.get(schedule.flow_id)
            if version is None:
                continue  # a flow without a usable version has nothing to run
            stat = stats.get(schedule.pk, {})
            try:
                starts = _planned_starts(
                    schedule, tick_now=tick_now, newest=stat.get("newest"), future_count=stat.get("future", 0),
                    horizon_runs=horizon_runs, horizon=horizon,
                )
            except InvalidInput:
                logger.warning("schedule %s cannot be evaluated; skipped", schedule.pk, exc_info=True)
                continue
            parameters = {**_defaults(version), **(schedule.parameters or {})}
            runs.extend(
                new_scheduled_run(
                    flow=flow, flow_version=version, name=_run_name(flow.name, start), now=clock,
                    scheduled_start=start, parameters=parameters, created_by_kind=FlowRun.CreatedBy.SCHEDULE,
                    schedule=schedule,
                )
                for start in starts
            )
        # A run another tick already created (same schedule and start) is skipped; the rest are
        # inserted with their first state and announced (one event per flow).
        # Past a workspace's run quota only the earliest runs that fit are created (partial).
        return len(insert_scheduled_runs(runs, now=clock, ignore_conflicts=True, partial=True)), next_after
