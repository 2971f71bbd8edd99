"""Billing data: plans (data, not code branches), a workspace's subscription, its run meter per
billing period, the Stripe events already applied, and the quota notices already sent.

Limits are read in one place, :func:`billing.selectors.limits_for`: the plan's figures, overridden
by an operator's custom figures on the subscription (Enterprise). ``None`` means "no limit".
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from core.tenancy import TenantModel


class Plan(models.Model):
    """One plan on offer. Free, Standard and Enterprise are rows written by a data migration;
    an operator may edit their figures in the admin."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    # Seats included; None: as many as the subscription pays for (its quantity).
    seats = models.PositiveIntegerField(null=True, blank=True)
    # Flow runs per billing period; None: unlimited.
    runs_per_period = models.PositiveIntegerField(null=True, blank=True)
    # Runs past the allowance are billed as overage (Standard) instead of refused (Free).
    metered_overage = models.BooleanField(default=False)
    log_retention_days = models.PositiveIntegerField(default=7)
    price_per_seat_cents = models.PositiveIntegerField(default=0)
    overage_cents_per_1000_runs = models.PositiveIntegerField(default=0)
    # Stripe: the seat price (looked up by its lookup key) and the meter overage is reported to.
    stripe_price_lookup_key = models.CharField(max_length=100, blank=True)
    stripe_meter_event_name = models.CharField(max_length=100, blank=True)
    # Offered on the billing page (Enterprise is arranged with sales, not bought there).
    self_serve = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    INCOMPLETE = "incomplete"


class Subscription(TenantModel):
    """A workspace's one subscription. A workspace without a row is on Free. Stripe's webhooks
    are the source of truth for the paid fields (billing/webhooks.py)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    seats = models.PositiveIntegerField(default=0, help_text="Seats paid for (Stripe's quantity).")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # Past due: paid limits stay until this moment, then Free's apply (nothing is deleted).
    grace_ends_at = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    stripe_subscription_id = models.CharField(max_length=64, blank=True)
    # The Stripe event time of the last change applied: an older event never overwrites a newer.
    stripe_synced_at = models.DateTimeField(null=True, blank=True)
    # An operator's figures for this workspace (Enterprise); blank: the plan's.
    custom_seats = models.PositiveIntegerField(null=True, blank=True)
    custom_runs_per_period = models.PositiveIntegerField(null=True, blank=True)
    custom_log_retention_days = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace"], name="subscription_one_per_workspace")]
        indexes = [models.Index(fields=["stripe_subscription_id"]), models.Index(fields=["stripe_customer_id"])]


class RunMeter(TenantModel):
    """Flow runs created in one billing period. ``runs`` only grows through one guarded UPDATE
    (billing/quotas.py), so concurrent creations can never pass the limit together (F5).
    ``runs_limit`` is copied from the plan when the period opens and when the plan changes, so the
    check needs no other row."""

    id = models.BigAutoField(primary_key=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    runs = models.PositiveIntegerField(default=0)
    runs_limit = models.PositiveIntegerField(null=True, blank=True)
    # Standard: runs past the limit are counted, not refused (overage).
    overage_allowed = models.BooleanField(default=False)
    # What the last guarded UPDATE granted; read back by that same statement (billing/quotas.py).
    last_grant = models.PositiveIntegerField(default=0)
    # Overage runs already sent to Stripe as meter events, and a batch being sent (its end): the
    # batch is written down before it is sent, so a worker that dies sends the same batch again
    # under the same identifier and Stripe counts it once (billing/overage.py).
    overage_reported = models.PositiveIntegerField(default=0)
    overage_sending = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "period_start"], name="run_meter_one_per_period"),
        ]
        indexes = [models.Index(fields=["workspace", "period_end"])]


class StripeEvent(models.Model):
    """A Stripe event applied: recorded in the same transaction as its effects, so a replay finds
    it and does nothing (F2)."""

    id = models.CharField(primary_key=True, max_length=255)
    type = models.CharField(max_length=100)
    created = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class QuotaNotice(TenantModel):
    """A quota warning sent to the Owners (80 % or 100 % of a limit), once per period."""

    id = models.BigAutoField(primary_key=True)
    period_start = models.DateTimeField()
    limit = models.CharField(max_length=16)  # "runs" or "seats"
    threshold = models.PositiveSmallIntegerField()  # 80 or 100
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "period_start", "limit", "threshold"],
                                    name="quota_notice_once_per_period"),
        ]
