"""The fake's Stripe account: objects, the operations on them and the events they cause.

Everything lives in one `StripeState` guarded by one lock (the HTTP handler holds it for a whole
API call, so two requests with the same idempotency key are answered one after the other, the
second as a replay). Operations return the events they emitted; whoever called decides when they
are delivered, outside the lock, because a webhook receiver may call the API back while it handles
an event.

Shapes follow the API version the pinned stripe library speaks (2025-03-31 and later): billing
periods live on subscription items (`items.data[].current_period_start/end`), an invoice names
its subscription under `parent.subscription_details.subscription` and says it is paid through
`status == "paid"`.
"""

from __future__ import annotations

import calendar
import copy
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

API_VERSION = "2026-10-28.endive"
_ALPHABET = string.ascii_letters + string.digits

Obj = dict[str, Any]


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


class StripeError(Exception):
    """An error answered the way Stripe answers it: `{"error": {type, message, param?, code?}}`."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Obj = {"error": {"type": error_type, "message": message}}
        if param is not None:
            self.body["error"]["param"] = param
        if code is not None:
            self.body["error"]["code"] = code
        self.headers = headers or {}


def missing(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> StripeError:
    return StripeError(f"No such {kind}: '{object_id}'", status=status, param=param, code="resource_missing")


def list_object(data: list[Obj], url: str, has_more: bool = False) -> Obj:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def add_interval(timestamp: int, interval: str, count: int) -> int:
    """The end of a billing period: calendar months and years, like Stripe's billing cycle."""
    start = datetime.fromtimestamp(timestamp, UTC)
    if interval == "day":
        return int((start + timedelta(days=count)).timestamp())
    if interval == "week":
        return int((start + timedelta(weeks=count)).timestamp())
    months = count * (12 if interval == "year" else 1)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


@dataclass
class FailureRule:
    """The next `remaining` calls matching method and path answer `status` (see server.py)."""

    method: str
    path: str
    remaining: int
    status: int = 500
    when: str = "before"  # "before": nothing happens; "after": the call runs, its answer is lost
    message: str = "An unknown error occurred (injected by the fake)."


@dataclass
class StripeState:
    lock: threading.RLock = field(default_factory=threading.RLock)
    customers: dict[str, Obj] = field(default_factory=dict)
    prices: dict[str, Obj] = field(default_factory=dict)
    checkout_sessions: dict[str, Obj] = field(default_factory=dict)
    checkout_private: dict[str, Obj] = field(default_factory=dict)  # line items, subscription_data
    portal_sessions: dict[str, Obj] = field(default_factory=dict)
    subscriptions: dict[str, Obj] = field(default_factory=dict)
    invoices: dict[str, Obj] = field(default_factory=dict)
    meter_events: list[Obj] = field(default_factory=list)
    meter_identifiers: set[str] = field(default_factory=set)
    events: dict[str, Obj] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # event ids waiting for delivery, in order
    deliveries: list[Obj] = field(default_factory=list)
    requests: list[Obj] = field(default_factory=list)
    idempotency: dict[str, Obj] = field(default_factory=dict)
    failures: list[FailureRule] = field(default_factory=list)
    hold: bool = False
    base_url: str = ""

    # -- prices ------------------------------------------------------------------------------

    def seed_price(self, spec: Obj) -> Obj:
        usage_type = spec.get("usage_type", "licensed")
        if usage_type not in ("licensed", "metered"):
            raise StripeError("usage_type must be licensed or metered", param="usage_type")
        interval = spec.get("interval", "month")
        if interval not in ("day", "week", "month", "year"):
            raise StripeError("interval must be day, week, month or year", param="interval")
        lookup_key = spec.get("lookup_key")
        if lookup_key is not None:
            for other in self.prices.values():  # Stripe moves a lookup key only on request
                if other["lookup_key"] == lookup_key:
                    raise StripeError(f"A price (`{other['id']}`) already uses that lookup key.",
                                      param="lookup_key")
        price_id = spec.get("id") or new_id("price_")
        price: Obj = {
            "id": price_id,
            "object": "price",
            "active": bool(spec.get("active", True)),
            "billing_scheme": "per_unit",
            "created": now(),
            "currency": spec.get("currency", "usd"),
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": dict(spec.get("metadata") or {}),
            "nickname": spec.get("nickname"),
            "product": spec.get("product") or new_id("prod_", 14),
            "recurring": {
                "interval": interval,
                "interval_count": int(spec.get("interval_count", 1)),
                "meter": spec.get("meter"),
                "usage_type": usage_type,
            },
            "tax_behavior": "unspecified",
            "type": "recurring",
            "unit_amount": int(spec.get("unit_amount", 0)),
            "unit_amount_decimal": str(int(spec.get("unit_amount", 0))),
        }
        # Which meter events a metered price bills (the fake's stand-in for a Meter object).
        price["_meter_event_name"] = spec.get("meter_event_name")
        self.prices[price_id] = price
        return self.public(price)

    def get_price(self, price_id: str, *, param: str = "id", status: int = 404) -> Obj:
        price = self.prices.get(price_id)
        if price is None:
            raise missing("price", price_id, param=param, status=status)
        return price

    @staticmethod
    def public(obj: Obj) -> Obj:
        """A copy without the fake's private `_` fields, as the API shows it."""
        if isinstance(obj, dict):
            return {k: StripeState.public(v) for k, v in obj.items() if not k.startswith("_")}
        if isinstance(obj, list):
            return [StripeState.public(v) for v in obj]
        return obj

    # -- customers ---------------------------------------------------------------------------

    def create_customer(self, params: Obj) -> Obj:
        customer_id = new_id("cus_", 14)
        customer: Obj = {
            "id": customer_id,
            "object": "customer",
            "address": params.get("address"),
            "balance": 0,
            "created": now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": params.get("description"),
            "email": params.get("email"),
            "invoice_prefix": new_id("", 8).upper(),
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
            "livemode": False,
            "metadata": merge_metadata({}, params.get("metadata")),
            "name": params.get("name"),
            "phone": params.get("phone"),
            "preferred_locales": params.get("preferred_locales") or [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.customers[customer_id] = customer
        return customer

    def get_customer(self, customer_id: str, *, param: str = "id", status: int = 404) -> Obj:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise missing("customer", customer_id, param=param, status=status)
        return customer

    def update_customer(self, customer_id: str, params: Obj) -> tuple[Obj, list[Obj]]:
        customer = self.get_customer(customer_id)
        previous: Obj = {}
        for key in ("email", "name", "description", "phone", "address", "preferred_locales"):
            if key in params and params[key] != customer.get(key):
                previous[key] = customer.get(key)
                customer[key] = params[key] if params[key] != "" else None
        if "metadata" in params:
            metadata = merge_metadata(customer["metadata"], params["metadata"])
            if metadata != customer["metadata"]:
                previous["metadata"] = customer["metadata"]
                customer["metadata"] = metadata
        events = [self.emit("customer.updated", customer, previous)] if previous else []
        return customer, events

    # -- checkout ----------------------------------------------------------------------------

    def create_checkout_session(self, params: Obj, line_items: list[Obj]) -> Obj:
        session_id = new_id("cs_test_", 58)
        amount = sum(item["price"]["unit_amount"] * (item.get("quantity") or 0) for item in line_items)
        session: Obj = {
            "id": session_id,
            "object": "checkout.session",
            "allow_promotion_codes": params.get("allow_promotion_codes") == "true" or None,
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now(),
            "currency": line_items[0]["price"]["currency"] if line_items else None,
            "customer": params.get("customer"),
            "customer_creation": None if params.get("customer") else "always",
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": now() + 24 * 3600,
            "invoice": None,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": merge_metadata({}, params.get("metadata")),
            "mode": params.get("mode"),
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": params.get("success_url"),
            "ui_mode": "hosted",
            "url": f"{self.base_url}/_fake/checkout/{session_id}",
        }
        self.checkout_sessions[session_id] = session
        self.checkout_private[session_id] = {
            "line_items": line_items,
            "subscription_data": params.get("subscription_data") or {},
        }
        return session

    def get_checkout_session(self, session_id: str) -> Obj:
        session = self.checkout_sessions.get(session_id)
        if session is None:
            raise missing("checkout.session", session_id)
        return session

    def complete_checkout(self, session_id: str, email: str | None = None) -> tuple[Obj, list[Obj]]:
        """The customer pays: customer (if none), active subscription, paid invoice, and the
        events checkout.session.completed, customer.subscription.created, invoice.paid."""
        session = self.get_checkout_session(session_id)
        if session["status"] != "open":
            raise StripeError(f"Checkout session {session_id} is {session['status']}, not open.")
        if session["mode"] != "subscription":
            raise StripeError("The fake completes subscription-mode sessions only.", param="mode")
        private = self.checkout_private[session_id]
        events: list[Obj] = []
        customer_id = session["customer"]
        if customer_id is None:
            customer = self.create_customer({"email": email or session["customer_email"] or "payer@example.com"})
            customer_id = customer["id"]
            events.append(self.emit("customer.created", customer))
        customer = self.customers[customer_id]
        sub_metadata = (private["subscription_data"] or {}).get("metadata")
        subscription = self._new_subscription(customer_id, private["line_items"], sub_metadata)
        invoice = self._new_invoice(subscription, "subscription_create", paid=True)
        subscription["latest_invoice"] = invoice["id"]
        session.update({
            "status": "complete",
            "payment_status": "paid",
            "customer": customer_id,
            "customer_details": {"email": customer["email"], "name": customer["name"]},
            "subscription": subscription["id"],
            "invoice": invoice["id"],
        })
        events.append(self.emit("checkout.session.completed", session))
        events.append(self.emit("customer.subscription.created", subscription))
        events.append(self.emit("invoice.paid", invoice))
        return {"session": session, "subscription": subscription, "invoice": invoice}, events

    def expire_checkout(self, session_id: str) -> tuple[Obj, list[Obj]]:
        """The customer never paid: the session expires (checkout.session.expired)."""
        session = self.get_checkout_session(session_id)
        if session["status"] != "open":
            raise StripeError(f"Checkout session {session_id} is {session['status']}, not open.")
        session.update({"status": "expired", "url": None})
        return {"session": session}, [self.emit("checkout.session.expired", session)]

    # -- billing portal ----------------------------------------------------------------------

    def create_portal_session(self, customer_id: str, return_url: str | None) -> Obj:
        session_id = new_id("bps_", 24)
        session: Obj = {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": "bpc_fakedefaultconfiguration",
            "created": now(),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": None,
            "on_behalf_of": None,
            "return_url": return_url,
            "url": f"{self.base_url}/_fake/portal/{session_id}",
        }
        self.portal_sessions[session_id] = session
        return session

    # -- subscriptions -----------------------------------------------------------------------

    def _new_item(self, subscription_id: str, price: Obj, quantity: int | None, start: int, end: int) -> Obj:
        return {
            "id": new_id("si_", 14),
            "object": "subscription_item",
            "created": now(),
            "current_period_end": end,
            "current_period_start": start,
            "discounts": [],
            "metadata": {},
            "price": price,
            "quantity": quantity,
            "subscription": subscription_id,
            "tax_rates": [],
        }

    def _new_subscription(self, customer_id: str, line_items: list[Obj], metadata: Any) -> Obj:
        subscription_id = new_id("sub_", 24)
        start = now()
        recurring = line_items[0]["price"]["recurring"]
        end = add_interval(start, recurring["interval"], recurring["interval_count"])
        items = [
            self._new_item(subscription_id, copy.deepcopy(item["price"]), item.get("quantity"), start, end)
            for item in line_items
        ]
        subscription: Obj = {
            "id": subscription_id,
            "object": "subscription",
            "billing_cycle_anchor": start,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "created": start,
            "currency": line_items[0]["price"]["currency"],
            "customer": customer_id,
            "default_payment_method": None,
            "description": None,
            "discounts": [],
            "ended_at": None,
            "items": list_object(items, f"/v1/subscription_items?subscription={subscription_id}"),
            "latest_invoice": None,
            "livemode": False,
            "metadata": merge_metadata({}, metadata),
            "start_date": start,
            "status": "active",
            "test_clock": None,
            "trial_end": None,
            "trial_start": None,
        }
        self.subscriptions[subscription_id] = subscription
        return subscription

    def get_subscription(self, subscription_id: str) -> Obj:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise missing("subscription", subscription_id)
        return subscription

    def update_subscription(self, subscription_id: str, params: Obj) -> tuple[Obj, list[Obj]]:
        """POST /v1/subscriptions/{id} semantics for items, cancel_at_period_end, cancel_at and
        metadata. As on Stripe, an item without `id` is ADDED (changing a price means naming the
        existing item: `items[0][id]=si_...&items[0][price]=price_...`)."""
        subscription = self.get_subscription(subscription_id)
        if subscription["status"] == "canceled" and set(params) - {"metadata", "cancellation_details", "expand"}:
            raise StripeError("A canceled subscription can only update its cancellation_details and metadata.")
        previous: Obj = {}
        if "items" in params:
            self._update_items(subscription, params["items"], previous)
        if "cancel_at_period_end" in params:
            flag = parse_bool(params["cancel_at_period_end"], "cancel_at_period_end")
            if flag != subscription["cancel_at_period_end"]:
                previous["cancel_at_period_end"] = subscription["cancel_at_period_end"]
                previous["cancel_at"] = subscription["cancel_at"]
                previous["canceled_at"] = subscription["canceled_at"]
                subscription["cancel_at_period_end"] = flag
                subscription["cancel_at"] = period_end(subscription) if flag else None
                subscription["canceled_at"] = now() if flag else None
        if "cancel_at" in params and "cancel_at_period_end" not in params:
            value = params["cancel_at"]
            cancel_at = None if value == "" else parse_int(value, "cancel_at")
            if cancel_at != subscription["cancel_at"]:
                previous["cancel_at"] = subscription["cancel_at"]
                subscription["cancel_at"] = cancel_at
        if "metadata" in params:
            metadata = merge_metadata(subscription["metadata"], params["metadata"])
            if metadata != subscription["metadata"]:
                previous["metadata"] = subscription["metadata"]
                subscription["metadata"] = metadata
        if isinstance(params.get("cancellation_details"), dict):
            subscription["cancellation_details"].update(params["cancellation_details"])
        events = [self.emit("customer.subscription.updated", subscription, previous)] if previous else []
        return subscription, events

    def _update_items(self, subscription: Obj, specs: Any, previous: Obj) -> None:
        if not isinstance(specs, list):
            raise StripeError("Invalid array", param="items")
        items: list[Obj] = copy.deepcopy(subscription["items"]["data"])
        start, end = items[0]["current_period_start"], items[0]["current_period_end"]
        for index, spec in enumerate(specs):
            param = f"items[{index}]"
            if not isinstance(spec, dict):
                raise StripeError("Invalid hash", param=param)
            if spec.get("id"):
                item = next((i for i in items if i["id"] == spec["id"]), None)
                if item is None:
                    raise missing("subscription item", spec["id"], param=f"{param}[id]", status=400)
                if parse_bool(spec.get("deleted", "false"), f"{param}[deleted]"):
                    items.remove(item)
                    continue
            else:
                if "price" not in spec:
                    raise StripeError("Missing required param: price.", param=f"{param}[price]")
                item = self._new_item(subscription["id"], {}, None, start, end)
                items.append(item)
            if "price" in spec:
                price = self.get_price(spec["price"], param=f"{param}[price]", status=400)
                if any(i is not item and i["price"].get("id") == price["id"] for i in items):
                    raise StripeError(f"Cannot add multiple subscription items with the same price: {price['id']}",
                                      param=f"{param}[price]")
                item["price"] = copy.deepcopy(price)
            if "quantity" in spec:
                quantity = parse_int(spec["quantity"], f"{param}[quantity]")
                if quantity < 0:
                    raise StripeError("Invalid integer: must be at least 0", param=f"{param}[quantity]")
                item["quantity"] = quantity
            elif not spec.get("id") and item["price"]["recurring"]["usage_type"] == "licensed":
                item["quantity"] = 1
        if not items:
            raise StripeError("A subscription must have at least one active plan.", param="items")
        if items != subscription["items"]["data"]:
            previous["items"] = copy.deepcopy(subscription["items"])
            subscription["items"]["data"] = items

    def cancel_subscription(self, subscription_id: str, params: Obj | None = None) -> tuple[Obj, list[Obj]]:
        subscription = self.get_subscription(subscription_id)
        if subscription["status"] == "canceled":
            raise StripeError(f"The subscription {subscription_id} is already canceled.")
        moment = now()
        subscription.update({"status": "canceled", "canceled_at": moment, "ended_at": moment})
        details = (params or {}).get("cancellation_details")
        if isinstance(details, dict):
            subscription["cancellation_details"].update(details)
        return subscription, [self.emit("customer.subscription.deleted", subscription)]

    def advance_period(self, subscription_id: str) -> tuple[Obj, list[Obj]]:
        """The period ends. With cancel_at_period_end the subscription ends
        (customer.subscription.deleted); otherwise it renews: the next period starts, an invoice
        for the period that ended (licensed seats + metered usage) is paid, and
        customer.subscription.updated then invoice.paid are sent."""
        subscription = self.get_subscription(subscription_id)
        if subscription["status"] == "canceled":
            raise StripeError(f"The subscription {subscription_id} is canceled.")
        if subscription["cancel_at_period_end"]:
            end = period_end(subscription)
            subscription.update({"status": "canceled", "ended_at": end})
            return {"subscription": subscription}, [self.emit("customer.subscription.deleted", subscription)]
        previous: Obj = {"items": copy.deepcopy(subscription["items"]),
                         "latest_invoice": subscription["latest_invoice"]}
        invoice = self._new_invoice(subscription, "subscription_cycle", paid=True, usage=True)
        for item in subscription["items"]["data"]:
            recurring = item["price"]["recurring"]
            item["current_period_start"] = item["current_period_end"]
            item["current_period_end"] = add_interval(item["current_period_end"], recurring["interval"],
                                                      recurring["interval_count"])
        if subscription["status"] != "active":
            previous["status"] = subscription["status"]
            subscription["status"] = "active"
        subscription["latest_invoice"] = invoice["id"]
        events = [self.emit("customer.subscription.updated", subscription, previous),
                  self.emit("invoice.paid", invoice)]
        return {"subscription": subscription, "invoice": invoice}, events

    def fail_payment(self, subscription_id: str) -> tuple[Obj, list[Obj]]:
        """A charge for the current period fails: an open invoice, invoice.payment_failed, the
        subscription past_due, customer.subscription.updated."""
        subscription = self.get_subscription(subscription_id)
        if subscription["status"] == "canceled":
            raise StripeError(f"The subscription {subscription_id} is canceled.")
        invoice = self._new_invoice(subscription, "subscription_cycle", paid=False)
        previous: Obj = {"latest_invoice": subscription["latest_invoice"]}
        if subscription["status"] != "past_due":
            previous["status"] = subscription["status"]
        subscription.update({"status": "past_due", "latest_invoice": invoice["id"]})
        events = [self.emit("invoice.payment_failed", invoice),
                  self.emit("customer.subscription.updated", subscription, previous)]
        return {"subscription": subscription, "invoice": invoice}, events

    def pay_invoice(self, invoice_id: str) -> tuple[Obj, list[Obj]]:
        """A retried charge succeeds: invoice.paid, and a past_due subscription is active again."""
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise missing("invoice", invoice_id)
        if invoice["status"] != "open":
            raise StripeError(f"Invoice is already {invoice['status']}.", code="invoice_not_open")
        moment = now()
        invoice.update({"status": "paid", "amount_paid": invoice["amount_due"], "amount_remaining": 0,
                        "attempt_count": invoice["attempt_count"] + 1, "next_payment_attempt": None})
        invoice["status_transitions"]["paid_at"] = moment
        events = [self.emit("invoice.paid", invoice)]
        subscription = self.subscriptions.get(invoice["parent"]["subscription_details"]["subscription"])
        if subscription is not None and subscription["status"] == "past_due":
            subscription["status"] = "active"
            events.append(self.emit("customer.subscription.updated", subscription, {"status": "past_due"}))
        return {"invoice": invoice, "subscription": subscription}, events

    # -- invoices ----------------------------------------------------------------------------

    def _new_invoice(self, subscription: Obj, reason: str, *, paid: bool, usage: bool = False) -> Obj:
        invoice_id = new_id("in_", 24)
        moment = now()
        lines = []
        start = subscription["items"]["data"][0]["current_period_start"]
        end = subscription["items"]["data"][0]["current_period_end"]
        for item in subscription["items"]["data"]:
            price = item["price"]
            if price["recurring"]["usage_type"] == "metered":
                if not usage:
                    continue
                quantity = self.usage(subscription["customer"], price.get("_meter_event_name"), start, end)
            else:
                quantity = item["quantity"] or 0
            lines.append({
                "id": new_id("il_", 24),
                "object": "line_item",
                "amount": price["unit_amount"] * quantity,
                "currency": price["currency"],
                "description": f"{quantity} × {price.get('nickname') or price['id']}",
                "invoice": invoice_id,
                "livemode": False,
                "metadata": {},
                "period": {"start": start, "end": end},
                "pricing": {"type": "price_details",
                            "price_details": {"price": price["id"], "product": price["product"]},
                            "unit_amount_decimal": price["unit_amount_decimal"]},
                "quantity": quantity,
                "subscription": subscription["id"],
            })
        total = sum(line["amount"] for line in lines)
        customer = self.customers.get(subscription["customer"]) or {}
        invoice: Obj = {
            "id": invoice_id,
            "object": "invoice",
            "amount_due": total,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total,
            "attempt_count": 1,
            "attempted": True,
            "billing_reason": reason,
            "collection_method": "charge_automatically",
            "created": moment,
            "currency": subscription["currency"],
            "customer": subscription["customer"],
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "hosted_invoice_url": f"{self.base_url}/_fake/invoice/{invoice_id}",
            "invoice_pdf": f"{self.base_url}/_fake/invoice/{invoice_id}/pdf",
            "lines": list_object(lines, f"/v1/invoices/{invoice_id}/lines"),
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None if paid else moment + 3 * 24 * 3600,
            "number": f"{customer.get('invoice_prefix', 'FAKE')}-{len(self.invoices) + 1:04d}",
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": dict(subscription["metadata"]),
                                         "subscription": subscription["id"]},
            },
            "period_end": end,
            "period_start": start,
            "status": "paid" if paid else "open",
            "status_transitions": {"finalized_at": moment, "marked_uncollectible_at": None,
                                   "paid_at": moment if paid else None, "voided_at": None},
            "subtotal": total,
            "total": total,
        }
        self.invoices[invoice_id] = invoice
        return invoice

    def usage(self, customer_id: str, event_name: str | None, start: int, end: int) -> int:
        return sum(
            int(float(event["payload"].get("value", 0)))
            for event in self.meter_events
            if event["event_name"] == event_name
            and event["payload"].get("stripe_customer_id") == customer_id
            and start <= event["timestamp"] < end
        )

    # -- meter events ------------------------------------------------------------------------

    def record_meter_event(self, params: Obj) -> Obj:
        identifier = params.get("identifier") or new_id("", 32)
        if identifier in self.meter_identifiers:
            # Stripe's answer to a repeated identifier (unique for at least 24 hours): a 400 it
            # marks as not worth retrying.
            raise StripeError(f"An event already exists with identifier {identifier}.", param="identifier",
                              headers={"Stripe-Should-Retry": "false"})
        event: Obj = {
            "object": "billing.meter_event",
            "created": now(),
            "event_name": params["event_name"],
            "identifier": identifier,
            "livemode": False,
            "payload": dict(params["payload"]),
            "timestamp": params["timestamp"],
        }
        self.meter_identifiers.add(identifier)
        self.meter_events.append(event)
        return event

    # -- events ------------------------------------------------------------------------------

    def emit(self, event_type: str, obj: Obj, previous_attributes: Obj | None = None) -> Obj:
        """Record an event with a snapshot of the object as it is now."""
        data: Obj = {"object": self.public(copy.deepcopy(obj))}
        if previous_attributes:
            data["previous_attributes"] = self.public(copy.deepcopy(previous_attributes))
        event: Obj = {
            "id": new_id("evt_", 24),
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        self.events[event["id"]] = event
        return event

    def get_event(self, event_id: str) -> Obj:
        event = self.events.get(event_id)
        if event is None:
            raise missing("event", event_id)
        return event


def merge_metadata(current: Obj, update: Any) -> Obj:
    """Stripe's metadata update: keys merge, a key set to "" is removed, metadata="" clears all."""
    if update is None:
        return dict(current)
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise StripeError("Invalid hash", param="metadata")
    merged = dict(current)
    for key, value in update.items():
        if not isinstance(value, str):
            raise StripeError(f"Invalid value for metadata[{key}]: must be a string", param=f"metadata[{key}]")
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def period_end(subscription: Obj) -> int:
    return int(subscription["items"]["data"][0]["current_period_end"])


def parse_bool(value: Any, param: str) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise StripeError(f"Invalid boolean: {value}", param=param)


def parse_int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeError(f"Invalid integer: {value}", param=param)
