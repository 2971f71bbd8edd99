"""Billing reads: which plan and limits a workspace has now, and its billing period.

Limits are worked out here and nowhere else. With billing off (``settings.FLOWDECK_BILLING``, off
in embedded and self-hosted mode unless an operator turns it on) nothing is limited.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.tenancy import workspace_scope

from .models import Plan, Subscription, SubscriptionStatus
from .plans import ensure_default_plans

FREE = "free"


@dataclass(frozen=True)
class Limits:
    """A workspace's limits now. ``None``: no limit."""

    plan: Plan | None  # None with billing off
    seats: int | None
    runs_per_period: int | None
    overage_allowed: bool
    log_retention_days: int
    # The plan the paid subscription is on, when Free's limits apply because it lapsed.
    lapsed_plan: Plan | None = None


def billing_enabled() -> bool:
    return bool(settings.FLOWDECK_BILLING)


def free_plan() -> Plan:
    plan = Plan.objects.filter(code=FREE).first()
    if plan is None:
        ensure_default_plans()
        plan = Plan.objects.get(code=FREE)
    return plan


def subscription_of(workspace_id: Any) -> Subscription | None:
    with workspace_scope([workspace_id]):
        return Subscription.objects.for_workspace(workspace_id).select_related("plan").first()


def _in_force(subscription: Subscription, now: dt.datetime) -> bool:
    """Whether a paid subscription's limits apply: active, or past due within its grace period."""
    if subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
        return True
    if subscription.status == SubscriptionStatus.PAST_DUE:
        return subscription.grace_ends_at is None or subscription.grace_ends_at > now
    return False


def limits_for(workspace_id: Any, *, now: dt.datetime | None = None,
               subscription: Subscription | None = None) -> Limits:
    if not billing_enabled():
        return Limits(plan=None, seats=None, runs_per_period=None, overage_allowed=True,
                      log_retention_days=settings.LOG_RETENTION_DAYS_UNBILLED)
    now = now or timezone.now()
    subscription = subscription or subscription_of(workspace_id)
    free = free_plan()
    if subscription is None or not _in_force(subscription, now):
        lapsed = subscription.plan if subscription is not None and subscription.plan.code != FREE else None
        return Limits(plan=free, seats=free.seats, runs_per_period=free.runs_per_period,
                      overage_allowed=free.metered_overage, log_retention_days=free.log_retention_days,
                      lapsed_plan=lapsed)
    plan = subscription.plan
    # A per-seat plan allows the seats paid for; one with no quantity (Enterprise) any number.
    seats = plan.seats if plan.seats is not None else (subscription.seats or None)
    return Limits(
        plan=plan,
        seats=subscription.custom_seats if subscription.custom_seats is not None else seats,
        runs_per_period=(subscription.custom_runs_per_period if subscription.custom_runs_per_period is not None
                         else plan.runs_per_period),
        overage_allowed=plan.metered_overage,
        log_retention_days=subscription.custom_log_retention_days or plan.log_retention_days,
    )


def _month(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def billing_period(workspace_id: Any, *, now: dt.datetime | None = None,
                   subscription: Subscription | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The period the run meter counts in now: the paid subscription's current period while it is in
    force, otherwise the calendar month (UTC)."""
    now = now or timezone.now()
    subscription = subscription if subscription is not None else subscription_of(workspace_id)
    if (subscription is not None and _in_force(subscription, now) and subscription.current_period_start
            and subscription.current_period_end
            and subscription.current_period_start <= now < subscription.current_period_end):
        return subscription.current_period_start, subscription.current_period_end
    return _month(now)


def log_retention_days(workspace_id: Any) -> int:
    return limits_for(workspace_id).log_retention_days


def log_retention_by_workspace(*, now: dt.datetime | None = None) -> tuple[int, dict[Any, int]]:
    """For the log purge, across workspaces (call with RLS bypassed): the retention of every
    workspace not listed, and the workspaces whose subscription sets another."""
    if not billing_enabled():
        return settings.LOG_RETENTION_DAYS_UNBILLED, {}
    now = now or timezone.now()
    default = free_plan().log_retention_days
    other: dict[Any, int] = {}
    for subscription in Subscription.objects.unscoped().select_related("plan"):
        days = limits_for(subscription.workspace_id, now=now, subscription=subscription).log_retention_days
        if days != default:
            other[subscription.workspace_id] = days
    return default, other


__all__ = ["FREE", "Limits", "billing_enabled", "billing_period", "free_plan", "limits_for",
           "log_retention_by_workspace", "log_retention_days", "subscription_of"]
