"""Run overage to Stripe: a periodic job sends each metered workspace's runs past its allowance as
Stripe meter events, in batches, each run exactly once.

A batch is written down (``overage_sending``) in one transaction and sent in the next, under an
identifier made from the meter and the batch's bounds. A worker that dies between the two leaves the
batch written down; the next run sends that same batch again, and Stripe, which counts an
identifier once, ignores the repeat. Two workers at once never pick the same meter (the row is
locked, the other skips it).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.tenancy import rls_bypass

from . import stripe_gateway
from .models import Plan, RunMeter, Subscription

logger = logging.getLogger(__name__)

DUPLICATE = "already exists with identifier"


def report_overage() -> int:
    """Send every pending overage batch; returns how many runs were reported. A no-op without
    billing or Stripe."""
    if not settings.FLOWDECK_BILLING or not settings.STRIPE_SECRET_KEY:
        return 0
    with rls_bypass():
        candidates = list(RunMeter.objects.unscoped().filter(overage_allowed=True, runs_limit__isnull=False)
                          .values_list("pk", flat=True))
    return sum(_report_one(pk) for pk in candidates)


def _report_one(meter_id: Any) -> int:
    with transaction.atomic(), rls_bypass():
        meter = RunMeter.objects.unscoped().select_for_update(skip_locked=True).filter(pk=meter_id).first()
        if meter is None:
            return 0  # another worker has it
        overage = max(meter.runs - (meter.runs_limit or 0), 0)
        if meter.overage_sending <= meter.overage_reported:
            if overage <= meter.overage_reported:
                return 0
            meter.overage_sending = overage  # the batch to send: (reported, overage]
            RunMeter.objects.unscoped().filter(pk=meter.pk).update(overage_sending=overage)
        subscription = Subscription.objects.unscoped().filter(workspace_id=meter.workspace_id).first()
        plan = Plan.objects.filter(pk=subscription.plan_id).first() if subscription else None
        if not (subscription and subscription.stripe_customer_id and plan and plan.stripe_meter_event_name):
            logger.warning("meter %s has overage but no Stripe customer or meter to send it to", meter.pk)
            return 0
        start, end = meter.overage_reported, meter.overage_sending
        try:
            stripe_gateway.send_meter_event(
                event_name=plan.stripe_meter_event_name, customer=subscription.stripe_customer_id,
                value=end - start, identifier=f"flowdeck-meter-{meter.pk}-runs-{start}-{end}",
                timestamp=int(min(timezone.now(), meter.period_end).timestamp()) - 1,
            )
        except stripe_gateway.BillingUnavailable as exc:
            if DUPLICATE not in str(exc.__cause__ or ""):
                # Kept written down: the next run sends this same batch.
                logger.warning("overage of meter %s not sent yet: %s", meter.pk, exc)
                return 0
        RunMeter.objects.unscoped().filter(pk=meter.pk).update(overage_reported=end)
    return end - start


__all__ = ["report_overage"]
