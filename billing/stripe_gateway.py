"""Every call Flowdeck makes to Stripe, through the official library.

Each call that creates something carries an idempotency key derived from what it is for (F4): the
library retries a failed request with the same key, and a later call for the same purpose reuses
it too, so a 500 on the first try still yields one customer. What Stripe then decides (a paid
checkout, a plan change, a failed payment) reaches Flowdeck only through webhooks
(billing/webhooks.py); nothing here writes a subscription's paid fields.
"""

from __future__ import annotations

from typing import Any

import stripe
from django.conf import settings

from accounts.authz import Principal, authorize
from core.errors import Conflict, ServiceError
from core.tenancy import workspace_scope

from . import selectors
from .models import Plan, Subscription
from .subscriptions import locked_subscription


class BillingUnavailable(ServiceError):
    status_code = 503
    code = "billing_unavailable"


def _connected() -> None:
    """Buying and managing a plan needs billing on and a Stripe account: a 409 that says which,
    since no retry can help (unlike Stripe being unreachable, a 503)."""
    if not selectors.billing_enabled():
        raise Conflict("This installation runs without plans or limits: there is nothing to buy.",
                       code="billing_disabled")
    if not settings.STRIPE_SECRET_KEY:
        raise Conflict("Billing is on but not connected to Stripe; an operator must set STRIPE_SECRET_KEY "
                       "(docs/operations.md, 'Billing').", code="billing_not_connected")


def client() -> stripe.StripeClient:
    _connected()
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses=base,  # type: ignore[arg-type]
                               max_network_retries=2)


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except stripe.StripeError as exc:
        raise BillingUnavailable(f"Stripe could not {what} just now ({exc.user_message or 'an error'}); "
                                 "try again in a minute.") from exc


def ensure_customer(actor: Principal) -> str:
    """The workspace's Stripe customer id, created once (the idempotency key is the workspace)."""
    workspace = actor.workspace
    with workspace_scope([workspace.pk]):
        row = locked_subscription(workspace.pk)
    if row.stripe_customer_id:
        return row.stripe_customer_id
    email = actor.user.email if actor.user is not None else ""
    customer = _call("create the customer", client().v1.customers.create,
                     {"name": workspace.name, "email": email, "metadata": {"workspace_id": str(workspace.pk)}},
                     {"idempotency_key": f"flowdeck-customer-{workspace.pk}"})
    with workspace_scope([workspace.pk]):
        Subscription.objects.for_workspace(workspace).filter(pk=row.pk).update(stripe_customer_id=customer.id)
    return str(customer.id)


def _price_id(plan: Plan) -> str:
    prices = _call("look up the plan's price", client().v1.prices.list,
                   {"lookup_keys": [plan.stripe_price_lookup_key], "active": True})
    if not prices.data:
        raise BillingUnavailable(f"Stripe has no price with lookup key {plan.stripe_price_lookup_key!r} for the "
                                 f"{plan.name} plan; an operator must create it (docs/operations.md, 'Billing').")
    return str(prices.data[0].id)


def checkout_url(*, actor: Principal, plan_code: str, seats: int, success_url: str, cancel_url: str) -> str:
    """A Stripe Checkout page (subscription mode) for ``plan_code`` with ``seats`` seats."""
    authorize(actor, "billing:manage", actor.workspace)
    _connected()
    plan = Plan.objects.filter(code=plan_code, self_serve=True).exclude(stripe_price_lookup_key="").first()
    if plan is None:
        raise ServiceError(f"'{plan_code}' is not a plan that can be bought here; choose standard, or contact us "
                           "for Enterprise.", code="invalid_plan", details={"plan": ["Invalid."]})
    from accounts.services.members import seat_count

    needed = seat_count(actor.workspace)
    if seats < needed:
        raise ServiceError(f"This workspace has {needed} members and pending invitations; buy at least {needed} "
                           "seats.", code="too_few_seats", details={"seats": [f"At least {needed}."]})
    customer = ensure_customer(actor)
    workspace_id = str(actor.workspace.pk)
    session = _call("start the checkout", client().v1.checkout.sessions.create, {
        "mode": "subscription", "customer": customer, "client_reference_id": workspace_id,
        "line_items": [{"price": _price_id(plan), "quantity": seats}],
        "success_url": success_url, "cancel_url": cancel_url,
        "metadata": {"workspace_id": workspace_id, "plan": plan.code},
        "subscription_data": {"metadata": {"workspace_id": workspace_id, "plan": plan.code}},
    })
    return str(session.url)


def portal_url(*, actor: Principal, return_url: str) -> str:
    """Stripe's customer portal: card, plan and seat changes, cancellation."""
    authorize(actor, "billing:manage", actor.workspace)
    _connected()
    session = _call("open the billing portal", client().v1.billing_portal.sessions.create,
                    {"customer": ensure_customer(actor), "return_url": return_url})
    return str(session.url)


def invoices(*, actor: Principal, limit: int = 24) -> list[dict[str, Any]]:
    """The workspace's invoices, newest first (none before it has a Stripe customer)."""
    authorize(actor, "billing:read", actor.workspace)
    subscription = selectors.subscription_of(actor.workspace.pk)
    if subscription is None or not subscription.stripe_customer_id:
        return []
    found = _call("list the invoices", client().v1.invoices.list,
                  {"customer": subscription.stripe_customer_id, "limit": limit})
    rows = [invoice.to_dict() for invoice in found.data]  # Stripe objects are not dicts
    return [{"id": i["id"], "number": i.get("number") or "", "status": i.get("status") or "",
             "amount_due": i.get("amount_due") or 0, "amount_paid": i.get("amount_paid") or 0,
             "currency": i.get("currency") or "usd", "created": i.get("created"),
             "hosted_invoice_url": i.get("hosted_invoice_url") or ""} for i in rows]


def send_meter_event(*, event_name: str, customer: str, value: int, identifier: str, timestamp: int) -> None:
    """One overage report; Stripe counts an ``identifier`` once, so a resend changes nothing."""
    _call("record the usage", client().v1.billing.meter_events.create, {
        "event_name": event_name, "identifier": identifier, "timestamp": timestamp,
        "payload": {"stripe_customer_id": customer, "value": str(value)},
    })


def retrieve_subscription(subscription_id: str) -> Any:
    return _call("read the subscription", client().v1.subscriptions.retrieve, subscription_id)


__all__ = ["BillingUnavailable", "checkout_url", "client", "ensure_customer", "invoices", "portal_url",
           "retrieve_subscription", "send_meter_event"]
