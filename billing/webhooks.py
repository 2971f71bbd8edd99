"""Stripe webhooks: the source of truth for a workspace's paid plan.

- F1: the signature is checked on the raw body (300 s tolerance; any of the configured secrets,
  so one can be rotated) before anything else; a bad one is refused and nothing is written.
- F2: the event id is recorded in the same transaction as its effects. A replay finds it and does
  nothing; an error rolls both back and answers 5xx, so Stripe sends the event again.
- F3: events may arrive in any order. A change is applied only if its event is newer than the last
  one applied to that subscription, and a deleted subscription never comes back to life.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Workspace
from accounts.services.audit import audit_record
from core.tenancy import rls_bypass, workspace_scope

from .models import Plan, StripeEvent, Subscription, SubscriptionStatus
from .quotas import apply_limits_to_meter
from .subscriptions import locked_subscription

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300
HANDLED = frozenset({
    "checkout.session.completed", "customer.subscription.created", "customer.subscription.updated",
    "customer.subscription.deleted", "invoice.paid", "invoice.payment_failed",
})
_STATUSES = {s.value for s in SubscriptionStatus}


class BadSignature(Exception):
    """The body is not signed by Stripe with any of our webhook secrets (or is too old)."""


def verify(payload: bytes, signature: str) -> dict[str, Any]:
    """The event, if ``signature`` is Stripe's for ``payload`` under one of our secrets."""
    for secret in settings.STRIPE_WEBHOOK_SECRETS:
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, TOLERANCE_SECONDS)
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
        event = json.loads(payload)
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise BadSignature("The signed body is not a Stripe event.")
        return event
    raise BadSignature("No webhook secret matches the Stripe-Signature header (or it is older than 5 minutes).")


def _ts(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC) if value else None


def handle(event: dict[str, Any]) -> str:
    """Apply one verified event exactly once; returns what happened (for the response and logs)."""
    with transaction.atomic(), rls_bypass():
        try:
            with transaction.atomic():
                StripeEvent.objects.create(id=event["id"], type=str(event.get("type", ""))[:100],
                                           created=_ts(event.get("created")) or timezone.now())
        except IntegrityError:
            return "duplicate"
        kind = event.get("type")
        if kind not in HANDLED:
            return "ignored"
        obj = (event.get("data") or {}).get("object") or {}
        created = _ts(event.get("created")) or timezone.now()
        if kind == "checkout.session.completed":
            return _checkout_completed(obj, created)
        if kind.startswith("customer.subscription."):
            return _subscription_changed(obj, created, deleted=kind.endswith(".deleted"))
        return _invoice(obj, created, paid=kind == "invoice.paid")


def _workspace_for(metadata: dict[str, Any] | None, customer: str | None, reference: str | None = None) -> Any:
    candidate = reference or (metadata or {}).get("workspace_id")
    if candidate:
        found = Workspace.objects.filter(pk=candidate).values_list("pk", flat=True).first()
        if found is not None:
            return found
    if customer:
        return (Subscription.objects.unscoped().filter(stripe_customer_id=customer)
                .values_list("workspace_id", flat=True).first())
    return None


def _checkout_completed(session: dict[str, Any], created: dt.datetime) -> str:
    workspace_id = _workspace_for(session.get("metadata"), session.get("customer"), session.get("client_reference_id"))
    if workspace_id is None:
        return "unknown workspace"
    row = locked_subscription(workspace_id)
    fields = []
    if session.get("customer") and not row.stripe_customer_id:
        row.stripe_customer_id, fields = str(session["customer"]), ["stripe_customer_id"]
    if session.get("subscription") and row.stripe_subscription_id != session["subscription"]:
        # A new subscription: from now on its own events decide (the created event may come later).
        row.stripe_subscription_id = str(session["subscription"])
        row.stripe_synced_at = None
        fields += ["stripe_subscription_id", "stripe_synced_at"]
    if fields:
        row.save(update_fields=fields)
    return "linked"


def _plan_of(subscription: dict[str, Any]) -> Plan | None:
    items = ((subscription.get("items") or {}).get("data")) or []
    for item in items:
        price = item.get("price") or {}
        plan = Plan.objects.filter(stripe_price_lookup_key=price.get("lookup_key") or "\x00").first()
        if plan is not None:
            return plan
    code = (subscription.get("metadata") or {}).get("plan")
    return Plan.objects.filter(code=code).first() if code else None


def _quantity(subscription: dict[str, Any]) -> int:
    items = ((subscription.get("items") or {}).get("data")) or []
    return int(items[0].get("quantity") or 0) if items else int(subscription.get("quantity") or 0)


def _subscription_changed(sub: dict[str, Any], created: dt.datetime, *, deleted: bool) -> str:
    workspace_id = _workspace_for(sub.get("metadata"), sub.get("customer"))
    if workspace_id is None:
        return "unknown workspace"
    row = locked_subscription(workspace_id)
    sub_id = str(sub.get("id") or "")
    if row.stripe_subscription_id and row.stripe_subscription_id != sub_id and not deleted and (
            row.status != SubscriptionStatus.CANCELED):
        return "stale: another subscription is current"
    if row.stripe_subscription_id == sub_id and row.status == SubscriptionStatus.CANCELED:
        return "stale: the subscription was deleted"  # F3: a deleted subscription stays deleted
    if row.stripe_subscription_id == sub_id and row.stripe_synced_at and created < row.stripe_synced_at:
        return "stale: a newer event was applied"
    if deleted and row.stripe_subscription_id and row.stripe_subscription_id != sub_id:
        return "stale: not the current subscription"
    before = (row.plan_id, row.status, row.seats)
    reported = str(sub.get("status") or "")
    status = str(SubscriptionStatus.CANCELED if deleted else (
        reported if reported in _STATUSES else SubscriptionStatus.INCOMPLETE))
    plan = _plan_of(sub)
    if plan is not None and not deleted:
        row.plan = plan
    row.status = status
    row.seats = _quantity(sub)
    row.stripe_subscription_id = sub_id
    row.stripe_customer_id = str(sub.get("customer") or row.stripe_customer_id)
    row.current_period_start = _ts(_period(sub, "current_period_start")) or row.current_period_start
    row.current_period_end = _ts(_period(sub, "current_period_end")) or row.current_period_end
    if status == SubscriptionStatus.PAST_DUE and row.grace_ends_at is None:
        row.grace_ends_at = timezone.now() + dt.timedelta(days=settings.BILLING_GRACE_DAYS)
    elif status != SubscriptionStatus.PAST_DUE:
        row.grace_ends_at = None
    row.stripe_synced_at = created
    row.save()
    _settle(row, before)
    return "applied"


def _period(sub: dict[str, Any], name: str) -> Any:
    """Newer Stripe API versions keep the period on the subscription's items."""
    if sub.get(name):
        return sub[name]
    items = ((sub.get("items") or {}).get("data")) or []
    return items[0].get(name) if items else None


def _invoice(invoice: dict[str, Any], created: dt.datetime, *, paid: bool) -> str:
    details = invoice.get("subscription_details") or (invoice.get("parent") or {}).get("subscription_details") or {}
    workspace_id = _workspace_for(details.get("metadata"), invoice.get("customer"))
    if workspace_id is None:
        return "unknown workspace"
    row = locked_subscription(workspace_id)
    sub_id = invoice.get("subscription") or ((invoice.get("parent") or {}).get("subscription_details") or {}).get(
        "subscription")
    if sub_id and row.stripe_subscription_id and sub_id != row.stripe_subscription_id:
        return "stale: not the current subscription"
    if row.status == SubscriptionStatus.CANCELED or (row.stripe_synced_at and created < row.stripe_synced_at):
        return "stale"
    before = (row.plan_id, row.status, row.seats)
    if paid:
        row.status, row.grace_ends_at = SubscriptionStatus.ACTIVE, None
    else:
        row.status = SubscriptionStatus.PAST_DUE
        row.grace_ends_at = row.grace_ends_at or timezone.now() + dt.timedelta(days=settings.BILLING_GRACE_DAYS)
    row.stripe_synced_at = created
    row.save(update_fields=["status", "grace_ends_at", "stripe_synced_at", "updated_at"])
    _settle(row, before)
    return "applied"


def _settle(row: Subscription, before: tuple[Any, str, int]) -> None:
    """The current period's meter takes the new limits; the change goes to the audit log."""
    with workspace_scope([row.workspace_id]):
        apply_limits_to_meter(row.workspace_id)
        if before != (row.plan_id, row.status, row.seats):
            workspace = Workspace.objects.get(pk=row.workspace_id)
            audit_record(workspace=workspace, action="billing.subscription_changed", target=row,
                         target_label=f"{row.plan.name} plan ({row.status})",
                         data={"plan": row.plan.code, "status": row.status, "seats": row.seats, "by": "Stripe"})


__all__ = ["BadSignature", "handle", "verify"]
