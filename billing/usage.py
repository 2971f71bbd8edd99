"""The usage report: runs this billing period (total from the meter, by day and by flow from the
runs themselves), seats, and log storage, each against its limit. Every member may read it."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import Length, TruncDate
from django.utils import timezone

from accounts.authz import Principal, authorize
from accounts.services.members import seat_count
from core.tenancy import workspace_scope
from orchestration.models import FlowRun, LogEntry

from . import selectors
from .models import RunMeter


@dataclass
class UsageReport:
    plan: str | None  # the plan's code; None with billing off
    plan_name: str | None
    billing_enabled: bool
    period_start: dt.datetime
    period_end: dt.datetime
    runs_used: int
    runs_limit: int | None
    overage_allowed: bool
    seats_used: int
    seats_limit: int | None
    log_bytes: int
    log_retention_days: int
    runs_by_day: list[tuple[dt.date, int]] = field(default_factory=list)
    runs_by_flow: list[tuple[Any, str, int]] = field(default_factory=list)  # (flow id, name, runs)

    def share(self, used: int, limit: int | None) -> float | None:
        return None if not limit else used / limit

    @property
    def runs_share(self) -> float | None:
        return self.share(self.runs_used, self.runs_limit)

    @property
    def seats_share(self) -> float | None:
        return self.share(self.seats_used, self.seats_limit)


def usage_report(*, actor: Principal, now: dt.datetime | None = None) -> UsageReport:
    workspace = actor.workspace
    authorize(actor, "billing:read", workspace)
    now = now or timezone.now()
    with workspace_scope([workspace.pk]):
        limits = selectors.limits_for(workspace.pk, now=now)
        meter = (RunMeter.objects.for_workspace(workspace).filter(period_start__lte=now, period_end__gt=now).first()
                 if selectors.billing_enabled() else None)
        if meter is not None:
            start, end = meter.period_start, meter.period_end
        else:
            start, end = selectors.billing_period(workspace.pk, now=now)
        runs = FlowRun.objects.for_workspace(workspace).filter(created_at__gte=start, created_at__lt=end)
        by_day = list(runs.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values("day")
                      .annotate(n=Count("pk")).order_by("day").values_list("day", "n"))
        by_flow = list(runs.values("flow_id", "flow__name").annotate(n=Count("pk")).order_by("-n", "flow__name")
                       .values_list("flow_id", "flow__name", "n"))
        log_bytes = (LogEntry.objects.for_workspace(workspace).aggregate(b=Sum(Length("message")))["b"] or 0)
        seats = seat_count(workspace)
    return UsageReport(
        plan=limits.plan.code if limits.plan else None,
        plan_name=limits.plan.name if limits.plan else None,
        billing_enabled=selectors.billing_enabled(),
        period_start=start, period_end=end,
        # The meter counts every run created this period, deleted ones too; without billing, the runs.
        runs_used=meter.runs if meter else sum(n for _, n in by_day),
        runs_limit=limits.runs_per_period, overage_allowed=limits.overage_allowed,
        seats_used=seats, seats_limit=limits.seats,
        log_bytes=int(log_bytes), log_retention_days=limits.log_retention_days,
        runs_by_day=by_day, runs_by_flow=by_flow,
    )


def _cell(text: str) -> str:
    # A flow name a spreadsheet would read as a formula is written as plain text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def usage_csv(report: UsageReport) -> str:
    """The report as CSV: one row per day, then one per flow, then the totals."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", "value", "limit"])
    for day, n in report.runs_by_day:
        writer.writerow(["runs_by_day", day.isoformat(), n, ""])
    for _flow_id, name, n in report.runs_by_flow:
        writer.writerow(["runs_by_flow", _cell(name), n, ""])
    writer.writerow(["total", "runs", report.runs_used, report.runs_limit if report.runs_limit is not None else ""])
    writer.writerow(["total", "seats", report.seats_used, report.seats_limit if report.seats_limit is not None else ""])
    writer.writerow(["total", "log_bytes", report.log_bytes, ""])
    return out.getvalue()


__all__ = ["UsageReport", "usage_csv", "usage_report"]
