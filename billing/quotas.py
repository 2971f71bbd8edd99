"""Quota enforcement at the point of use: flow runs per billing period and seats.

Runs: each creation takes its runs from the workspace's :class:`~billing.models.RunMeter` with ONE
guarded UPDATE. The row lock that UPDATE takes orders concurrent creations, and the statement
decides from the row as it stands when it gets the lock, so 50 parallel creations with 10 runs left
get exactly 10 (F5), on PostgreSQL and SQLite alike. The meter belongs to the caller's transaction:
a creation that rolls back gives its runs back with it. Seats: the workspace row is locked while a
seat is checked and taken, so two invitations cannot both take the last seat.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Workspace
from core.errors import ServiceError
from core.tenancy import workspace_scope

from . import notices, selectors
from .models import RunMeter

UPGRADE_HINT = "An Owner can raise it by upgrading the plan on the workspace's Billing page."


class QuotaExceeded(ServiceError):
    """A plan limit stops this action (HTTP 402). ``details`` says which limit, the usage and the
    limit, so a program can show it and a person can act on it."""

    status_code = 402
    code = "quota_exceeded"


def _grant_sql(partial: bool) -> str:
    """How many of %(n)s runs the meter row grants, from the row as it stands (old values)."""
    if partial:
        return ("CASE WHEN runs_limit IS NULL OR overage_allowed OR runs + %(n)s <= runs_limit THEN %(n)s "
                "WHEN runs >= runs_limit THEN 0 ELSE runs_limit - runs END")
    return "CASE WHEN runs_limit IS NULL OR overage_allowed OR runs + %(n)s <= runs_limit THEN %(n)s ELSE 0 END"


def _take(workspace_id: Any, n: int, now: dt.datetime, partial: bool) -> tuple[int, int, int | None, Any] | None:
    """Take up to ``n`` runs from the meter of the period around ``now``: (granted, runs counted
    after, limit, period start), or None when that period has no meter yet."""
    grant = _grant_sql(partial)
    # Both SET expressions read the row's old values (standard SQL), so last_grant is what this
    # statement added; RETURNING reads it back under the same row lock.
    sql = (
        f"UPDATE {RunMeter._meta.db_table} SET last_grant = {grant}, runs = runs + {grant} "  # noqa: S608 (model name)
        "WHERE workspace_id = %(ws)s AND period_start <= %(now)s AND period_end > %(now)s "
        "RETURNING last_grant, runs, runs_limit, period_start"
    )
    with connection.cursor() as cursor:
        at = connection.ops.adapt_datetimefield_value(now)
        cursor.execute(sql, {"n": n, "ws": _db_uuid(workspace_id), "now": at})
        row = cursor.fetchone()
    return None if row is None else (int(row[0]), int(row[1]), row[2], row[3])


def _db_uuid(value: Any) -> Any:
    # SQLite stores UUIDs as 32 hex characters (Django's UUIDField); PostgreSQL takes the UUID.
    field = RunMeter._meta.get_field("workspace").target_field
    return field.get_db_prep_value(value, connection)


def open_meter(workspace_id: Any, *, now: dt.datetime | None = None) -> RunMeter:
    """The meter of the current billing period, created with the plan's limit if need be. A new
    period that starts inside an older one (an upgrade mid-month) ends the older one there, so
    exactly one meter covers any moment."""
    now = now or timezone.now()
    with workspace_scope([workspace_id]):
        subscription = selectors.subscription_of(workspace_id)
        start, end = selectors.billing_period(workspace_id, now=now, subscription=subscription)
        limits = selectors.limits_for(workspace_id, now=now, subscription=subscription)
        meters = RunMeter.objects.for_workspace(workspace_id)
        current = meters.filter(period_start__lte=now, period_end__gt=now).first()
        if current is not None and current.period_start == start:
            return current
        if current is not None:
            meters.filter(pk=current.pk).update(period_end=start if start > current.period_start else now)
        RunMeter.objects.unscoped().bulk_create(
            [RunMeter(workspace_id=workspace_id, period_start=start, period_end=end,
                      runs_limit=limits.runs_per_period, overage_allowed=limits.overage_allowed)],
            ignore_conflicts=True,
        )
        meter = meters.get(period_start=start)
        if meter.period_end <= now:
            # Back on a period that an upgrade cut short (a paid plan cancelled within the month it
            # began): the month's meter runs to its end again, its runs still counted.
            meters.filter(pk=meter.pk).update(period_end=end, runs_limit=limits.runs_per_period,
                                              overage_allowed=limits.overage_allowed)
            meter.refresh_from_db()
        return meter


def apply_limits_to_meter(workspace_id: Any, *, now: dt.datetime | None = None) -> RunMeter:
    """After a plan change: the current meter takes the new limit (runs already counted stay)."""
    now = now or timezone.now()
    meter = open_meter(workspace_id, now=now)
    limits = selectors.limits_for(workspace_id, now=now)
    with workspace_scope([workspace_id]):
        RunMeter.objects.for_workspace(workspace_id).filter(pk=meter.pk).update(
            runs_limit=limits.runs_per_period, overage_allowed=limits.overage_allowed)
    meter.runs_limit, meter.overage_allowed = limits.runs_per_period, limits.overage_allowed
    return meter


def take_runs(workspace_id: Any, n: int, *, partial: bool = False) -> int:
    """Count ``n`` new flow runs against the workspace's period and return how many may be created:
    ``n``, or with ``partial`` (the scheduler) as many as are left. Without ``partial`` a shortfall
    raises :class:`QuotaExceeded` and counts nothing. Call inside the creating transaction, scoped
    to the workspace (or bypassing RLS)."""
    if n <= 0 or not selectors.billing_enabled():
        return n
    now = timezone.now()
    taken = _take(workspace_id, n, now, partial)
    if taken is None:
        open_meter(workspace_id, now=now)
        taken = _take(workspace_id, n, now, partial)
        assert taken is not None, "the meter just opened covers now"
    granted, counted, limit, period_start = taken
    if granted < n and not partial:
        raise _runs_refused(workspace_id, n, counted, limit)
    threshold = notices.crossed(counted - granted, counted, limit)
    if threshold is not None:
        notices.notify_later(workspace_id, limit="runs", threshold=threshold, used=counted, allowed=int(limit or 0),
                             period_start=_as_datetime(period_start))
    return granted


def _as_datetime(value: Any) -> dt.datetime:
    # SQLite hands a raw column back as text.
    return value if isinstance(value, dt.datetime) else parse_datetime(str(value))  # type: ignore[return-value]


def give_back_runs(workspace_id: Any, n: int) -> None:
    """Return runs counted by :func:`take_runs` that were not created after all (an idempotency
    key another call inserted first)."""
    if n <= 0 or not selectors.billing_enabled():
        return
    RunMeter.objects.for_workspace(workspace_id).filter(
        period_start__lte=timezone.now(), period_end__gt=timezone.now(), runs__gte=n,
    ).update(runs=F("runs") - n)


def _runs_refused(workspace_id: Any, wanted: int, used: int, limit: int | None) -> QuotaExceeded:
    limits = selectors.limits_for(workspace_id)
    plan = limits.plan.name if limits.plan else "current"
    meter = RunMeter.objects.for_workspace(workspace_id).filter(
        period_start__lte=timezone.now(), period_end__gt=timezone.now()).first()
    resets = meter.period_end if meter else None
    left = max((limit or 0) - used, 0)
    asked = "a flow run" if wanted == 1 else f"{wanted:,} flow runs"
    message = (
        f"This workspace has used {used:,} of the {limit or 0:,} flow runs its {plan} plan allows this billing "
        f"period, so {asked} cannot be created"
        + (f" ({left:,} left)" if left else "")
        + (f"; the count starts again on {resets:%Y-%m-%d %H:%M} UTC" if resets else "")
        + f". {UPGRADE_HINT}"
    )
    return QuotaExceeded(message, details={
        "limit": "runs", "used": used, "allowed": limit, "requested": wanted,
        "plan": limits.plan.code if limits.plan else None,
        "resets_at": resets.isoformat() if resets else None,
    })


def check_seat_available(workspace: Workspace, *, adding: int = 1) -> None:
    """Refuse (402) an invitation or a new member beyond the plan's seats. Members and pending
    invitations both hold a seat. Locks the workspace row until the caller's transaction ends, so
    the seat checked is the seat taken."""
    if not selectors.billing_enabled():
        return
    from accounts.services.members import seat_count

    list(Workspace.objects.select_for_update().filter(pk=workspace.pk).values_list("pk", flat=True))
    limits = selectors.limits_for(workspace.pk)
    if limits.seats is None:
        return
    used = seat_count(workspace)
    if used + adding <= limits.seats:
        threshold = notices.crossed(used, used + adding, limits.seats)
        if threshold is not None:
            period_start, _end = selectors.billing_period(workspace.pk)
            notices.notify_later(workspace.pk, limit="seats", threshold=threshold, used=used + adding,
                                 allowed=limits.seats, period_start=period_start)
        return
    plan = limits.plan.name if limits.plan else "current"
    per_seat = limits.plan is not None and limits.plan.seats is None
    raise QuotaExceeded(
        f"This workspace uses {used} of the {limits.seats} seats its {plan} plan "
        f"{'pays for' if per_seat else 'includes'} (members and pending invitations), so no one else can be "
        f"added. {'An Owner can add seats on the Billing page.' if per_seat else UPGRADE_HINT} "
        "Revoking a pending invitation frees its seat.",
        details={"limit": "seats", "used": used, "allowed": limits.seats, "requested": adding,
                 "plan": limits.plan.code if limits.plan else None},
    )


__all__ = ["QuotaExceeded", "apply_limits_to_meter", "check_seat_available", "give_back_runs", "open_meter",
           "take_runs"]
