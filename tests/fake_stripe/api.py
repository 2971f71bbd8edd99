"""The Stripe v1 endpoints the fake answers: parameter checks and routing onto `StripeState`.

Each handler runs with the state's lock held and returns (status, body, events emitted). Unknown
parameters are refused as Stripe refuses them ("Received unknown parameter"), so a typo in the
caller fails here as it would in production.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from typing import Any

from tests.fake_stripe.state import (
    Obj,
    StripeError,
    StripeState,
    list_object,
    parse_bool,
    parse_int,
)

Result = tuple[int, Obj, list[Obj]]
Handler = Callable[[StripeState, Obj, tuple[str, ...]], Result]

_CUSTOMER_PARAMS = {
    "address", "balance", "business_name", "cash_balance", "description", "email", "expand", "individual_name",
    "invoice_prefix", "invoice_settings", "metadata", "name", "next_invoice_sequence", "payment_method", "phone",
    "preferred_locales", "shipping", "source", "tax", "tax_exempt", "tax_id_data", "test_clock", "validate",
}
_CHECKOUT_PARAMS = {
    "adaptive_pricing", "after_expiration", "allow_promotion_codes", "automatic_tax", "billing_address_collection",
    "branding_settings", "cancel_url", "client_reference_id", "consent_collection", "currency", "custom_fields",
    "custom_text", "customer", "customer_creation", "customer_email", "customer_update", "discounts", "expand",
    "excluded_payment_method_types", "expires_at", "invoice_creation", "line_items", "locale", "metadata", "mode",
    "name_collection", "optional_items", "origin_context", "payment_intent_data", "payment_method_collection",
    "payment_method_configuration", "payment_method_options", "payment_method_types", "permissions",
    "phone_number_collection", "redirect_on_completion", "return_url", "saved_payment_method_options",
    "setup_intent_data", "shipping_address_collection", "shipping_options", "submit_type", "subscription_data",
    "success_url", "tax_id_collection", "ui_mode", "wallet_options",
}
_LINE_ITEM_PARAMS = {"price", "quantity", "adjustable_quantity", "dynamic_tax_rates", "tax_rates"}
_PORTAL_PARAMS = {"customer", "return_url", "configuration", "expand", "flow_data", "locale", "on_behalf_of"}
_SUBSCRIPTION_UPDATE_PARAMS = {
    "add_invoice_items", "application_fee_percent", "automatic_tax", "billing_cycle_anchor", "billing_thresholds",
    "cancel_at", "cancel_at_period_end", "cancellation_details", "collection_method", "days_until_due",
    "default_payment_method", "default_source", "default_tax_rates", "description", "discounts", "expand",
    "invoice_settings", "items", "metadata", "off_session", "on_behalf_of", "pause_collection", "payment_behavior",
    "payment_settings", "pending_invoice_item_interval", "proration_behavior", "proration_date", "transfer_data",
    "trial_end", "trial_from_plan", "trial_settings",
}
_SUBSCRIPTION_ITEM_PARAMS = {
    "id", "price", "quantity", "deleted", "clear_usage", "discounts", "metadata", "price_data", "tax_rates",
    "billing_thresholds",
}
_CANCEL_PARAMS = {"cancellation_details", "expand", "invoice_now", "prorate"}
_LIST_PARAMS = {"limit", "starting_after", "ending_before", "expand", "created"}
_METER_EVENT_PARAMS = {"event_name", "payload", "identifier", "timestamp", "expand"}


def check_auth(authorization: str | None) -> StripeError | None:
    """Stripe takes the secret key as a bearer token or as the basic-auth user name."""
    if not authorization:
        return StripeError(
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').", status=401)
    scheme, _, credential = authorization.partition(" ")
    key = credential.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not key.startswith(("sk_test_", "rk_test_")):
        return StripeError(f"Invalid API Key provided: {key[:8]}****{key[-4:]}", status=401)
    return None


def _only(params: Obj, allowed: set[str], prefix: str = "") -> None:
    for key in params:
        if key not in allowed:
            name = f"{prefix}[{key}]" if prefix else key
            raise StripeError(f"Received unknown parameter: {name}", param=name)


def _required(params: Obj, key: str) -> Any:
    value = params.get(key)
    if value in (None, ""):
        raise StripeError(f"Missing required param: {key}.", param=key)
    return value


def _expand(state: StripeState, obj: Obj, params: Obj) -> Obj:
    """`expand[]=customer` / `latest_invoice` / `subscription` / `invoice` (`data.` + the field
    on lists): one level of ids."""
    fields = params.get("expand") or []
    if isinstance(fields, str):
        fields = [fields]
    shown = state.public(obj)
    stores = (state.customers, state.subscriptions, state.invoices, state.prices, state.checkout_sessions)
    for name in fields:
        value = shown.get(name)
        if isinstance(value, str):
            for store in stores:
                if value in store:
                    shown[name] = state.public(store[value])
    return shown


def _page(state: StripeState, objects: list[Obj], params: Obj, url: str) -> Obj:
    """Newest first, `limit` (1..100, default 10) and `starting_after` / `ending_before` cursors."""
    limit = parse_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise StripeError("Invalid integer: limit must be between 1 and 100", param="limit")
    ordered = list(reversed(objects))
    ids = [obj["id"] for obj in ordered]
    for cursor in ("starting_after", "ending_before"):
        if params.get(cursor) and params[cursor] not in ids:
            raise StripeError(f"No such object: '{params[cursor]}'", param=cursor, code="resource_missing")
    if params.get("starting_after"):
        ordered = ordered[ids.index(params["starting_after"]) + 1:]
    elif params.get("ending_before"):
        ordered = ordered[:ids.index(params["ending_before"])][-limit:]
    fields = params.get("expand") or []
    each = {"expand": [name.removeprefix("data.") for name in fields if name.startswith("data.")]}
    data = [_expand(state, obj, each) for obj in ordered[:limit]]
    return list_object(data, url, has_more=len(ordered) > limit)


# -- customers -------------------------------------------------------------------------------

def create_customer(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _CUSTOMER_PARAMS)
    customer = state.create_customer(params)
    return 200, _expand(state, customer, params), [state.emit("customer.created", customer)]


def get_customer(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    return 200, _expand(state, state.get_customer(ids[0]), params), []


def update_customer(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    _only(params, _CUSTOMER_PARAMS | {"default_source"})
    customer, events = state.update_customer(ids[0], params)
    return 200, _expand(state, customer, params), events


def list_customers(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _LIST_PARAMS | {"email", "test_clock"})
    customers = [c for c in state.customers.values() if "email" not in params or c["email"] == params["email"]]
    return 200, _page(state, customers, params, "/v1/customers"), []


# -- checkout --------------------------------------------------------------------------------

def create_checkout_session(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _CHECKOUT_PARAMS)
    mode = _required(params, "mode")
    if mode not in ("payment", "setup", "subscription"):
        raise StripeError("Invalid mode: must be one of payment, setup, or subscription", param="mode")
    if mode != "subscription":
        raise StripeError("The fake Stripe supports mode=subscription only.", param="mode")
    if params.get("ui_mode", "hosted") == "hosted":
        _required(params, "success_url")
    if params.get("customer") and params.get("customer_email"):
        raise StripeError("You may only specify one of these parameters: customer, customer_email.",
                          param="customer_email")
    if params.get("customer"):
        state.get_customer(params["customer"], param="customer", status=400)
    for key in ("metadata", "subscription_data"):
        if key in params and not isinstance(params[key], dict):
            raise StripeError("Invalid hash", param=key)
    raw_items = params.get("line_items")
    if not raw_items:
        raise StripeError("You must provide at least one recurring price in `subscription` mode when using prices.",
                          param="line_items")
    if not isinstance(raw_items, list):
        raise StripeError("Invalid array", param="line_items")
    line_items: list[Obj] = []
    for index, raw in enumerate(raw_items):
        param = f"line_items[{index}]"
        if not isinstance(raw, dict):
            raise StripeError("Invalid hash", param=param)
        _only(raw, _LINE_ITEM_PARAMS, param)
        if "price" not in raw:
            raise StripeError("Missing required param: price.", param=f"{param}[price]")
        price = state.get_price(raw["price"], param=f"{param}[price]", status=400)
        if not price["active"]:
            raise StripeError("The price specified is inactive. This field only accepts active prices.",
                              param=f"{param}[price]")
        metered = price["recurring"]["usage_type"] == "metered"
        if metered and "quantity" in raw:
            raise StripeError("Quantity should not be specified where usage_type is `metered`. "
                              f"Remove quantity from `{param}`.", param=f"{param}[quantity]")
        if not metered and "quantity" not in raw:
            raise StripeError(f"Quantity is required. Add `quantity` to `{param}`.", param=f"{param}[quantity]")
        quantity = None if metered else parse_int(raw["quantity"], f"{param}[quantity]")
        if quantity is not None and quantity < 1:
            raise StripeError("This value must be greater than or equal to 1.", param=f"{param}[quantity]")
        line_items.append({"price": price, "quantity": quantity})
    intervals = {(i["price"]["recurring"]["interval"], i["price"]["recurring"]["interval_count"]) for i in line_items}
    if len(intervals) > 1:
        raise StripeError("All prices on a subscription must have the same `recurring.interval`.", param="line_items")
    session = state.create_checkout_session(params, line_items)
    return 200, _expand(state, session, params), []


def get_checkout_session(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    return 200, _expand(state, state.get_checkout_session(ids[0]), params), []


# -- billing portal --------------------------------------------------------------------------

def create_portal_session(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _PORTAL_PARAMS)
    customer_id = _required(params, "customer")
    state.get_customer(customer_id, param="customer", status=400)
    return 200, state.create_portal_session(customer_id, params.get("return_url")), []


# -- subscriptions ---------------------------------------------------------------------------

def get_subscription(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    return 200, _expand(state, state.get_subscription(ids[0]), params), []


def update_subscription(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    _only(params, _SUBSCRIPTION_UPDATE_PARAMS)
    for index, item in enumerate(params.get("items") or []):
        if isinstance(item, dict):
            _only(item, _SUBSCRIPTION_ITEM_PARAMS, f"items[{index}]")
    subscription, events = state.update_subscription(ids[0], params)
    return 200, _expand(state, subscription, params), events


def cancel_subscription(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    _only(params, _CANCEL_PARAMS)
    subscription, events = state.cancel_subscription(ids[0], params)
    return 200, _expand(state, subscription, params), events


def list_subscriptions(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _LIST_PARAMS | {"customer", "status", "price", "collection_method", "test_clock",
                                  "current_period_end", "current_period_start", "automatic_tax"})
    status = params.get("status")
    found = []
    for subscription in state.subscriptions.values():
        if params.get("customer") and subscription["customer"] != params["customer"]:
            continue
        if status in (None, "") and subscription["status"] == "canceled":
            continue  # Stripe leaves canceled subscriptions out unless asked for them
        if status not in (None, "", "all") and subscription["status"] != status:
            continue
        if params.get("price") and all(i["price"]["id"] != params["price"] for i in subscription["items"]["data"]):
            continue
        found.append(subscription)
    return 200, _page(state, found, params, "/v1/subscriptions"), []


# -- invoices --------------------------------------------------------------------------------

def list_invoices(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _LIST_PARAMS | {"customer", "subscription", "status", "collection_method", "due_date"})
    found = [
        invoice for invoice in state.invoices.values()
        if (not params.get("customer") or invoice["customer"] == params["customer"])
        and (not params.get("subscription")
             or invoice["parent"]["subscription_details"]["subscription"] == params["subscription"])
        and (not params.get("status") or invoice["status"] == params["status"])
    ]
    return 200, _page(state, found, params, "/v1/invoices"), []


def get_invoice(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    invoice = state.invoices.get(ids[0])
    if invoice is None:
        raise StripeError(f"No such invoice: '{ids[0]}'", status=404, param="id", code="resource_missing")
    return 200, _expand(state, invoice, params), []


# -- prices ----------------------------------------------------------------------------------

def get_price(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    return 200, _expand(state, state.get_price(ids[0]), params), []


def list_prices(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _LIST_PARAMS | {"active", "currency", "lookup_keys", "product", "recurring", "type"})
    lookup_keys = params.get("lookup_keys")
    if isinstance(lookup_keys, str):
        lookup_keys = [lookup_keys]
    active = parse_bool(params["active"], "active") if "active" in params else None
    found = [
        price for price in state.prices.values()
        if (lookup_keys is None or price["lookup_key"] in lookup_keys)
        and (active is None or price["active"] == active)
        and (not params.get("currency") or price["currency"] == params["currency"])
        and (not params.get("product") or price["product"] == params["product"])
    ]
    return 200, _page(state, found, params, "/v1/prices"), []


# -- meter events ----------------------------------------------------------------------------

def create_meter_event(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _METER_EVENT_PARAMS)
    event_name = _required(params, "event_name")
    payload = params.get("payload")
    if not isinstance(payload, dict) or not payload:
        raise StripeError("Missing required param: payload.", param="payload")
    for key in ("stripe_customer_id", "value"):
        if not payload.get(key):
            raise StripeError(f"Missing required param: payload[{key}].", param=f"payload[{key}]")
    try:
        float(payload["value"])
    except ValueError:
        raise StripeError(f"Invalid value for payload[value]: {payload['value']} is not a number",
                          param="payload[value]")
    identifier = params.get("identifier")
    if identifier is not None and not 1 <= len(identifier) <= 100:
        raise StripeError("identifier must be at most 100 characters", param="identifier")
    moment = int(time.time())
    timestamp = parse_int(params["timestamp"], "timestamp") if "timestamp" in params else moment
    if timestamp < moment - 35 * 24 * 3600 or timestamp > moment + 5 * 60:
        raise StripeError("Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                          param="timestamp")
    event = state.record_meter_event({"event_name": event_name, "payload": payload, "identifier": identifier,
                                      "timestamp": timestamp})
    return 200, dict(event), []


# -- events ----------------------------------------------------------------------------------

def get_event(state: StripeState, params: Obj, ids: tuple[str, ...]) -> Result:
    return 200, state.get_event(ids[0]), []


def list_events(state: StripeState, params: Obj, _: tuple[str, ...]) -> Result:
    _only(params, _LIST_PARAMS | {"type", "types", "delivery_success"})
    types = params.get("types") or ([params["type"]] if params.get("type") else None)
    found = [event for event in state.events.values() if types is None or event["type"] in types]
    return 200, _page(state, found, params, "/v1/events"), []


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(f"^{pattern}$"), handler)
    for method, pattern, handler in [
        ("POST", r"/v1/customers", create_customer),
        ("GET", r"/v1/customers", list_customers),
        ("GET", r"/v1/customers/([^/]+)", get_customer),
        ("POST", r"/v1/customers/([^/]+)", update_customer),
        ("POST", r"/v1/checkout/sessions", create_checkout_session),
        ("GET", r"/v1/checkout/sessions/([^/]+)", get_checkout_session),
        ("POST", r"/v1/billing_portal/sessions", create_portal_session),
        ("GET", r"/v1/subscriptions", list_subscriptions),
        ("GET", r"/v1/subscriptions/([^/]+)", get_subscription),
        ("POST", r"/v1/subscriptions/([^/]+)", update_subscription),
        ("DELETE", r"/v1/subscriptions/([^/]+)", cancel_subscription),
        ("GET", r"/v1/invoices", list_invoices),
        ("GET", r"/v1/invoices/([^/]+)", get_invoice),
        ("GET", r"/v1/prices", list_prices),
        ("GET", r"/v1/prices/([^/]+)", get_price),
        ("POST", r"/v1/billing/meter_events", create_meter_event),
        ("GET", r"/v1/events", list_events),
        ("GET", r"/v1/events/([^/]+)", get_event),
    ]
]


def dispatch(state: StripeState, method: str, path: str, params: Obj) -> Result:
    known_path = False
    for route_method, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match:
            known_path = True
            if route_method == method:
                return handler(state, params, match.groups())
    if known_path:
        raise StripeError(f"Unrecognized request URL ({method}: {path}).", status=404)
    raise StripeError(f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs.",
                      status=404)
