"""The fake Stripe, driven by the real stripe library (no Django, no database)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe

from tests.fake_stripe import FakeStripe, FakeStripeClient, FakeStripeControlError, FakeStripeProcess
from tests.fake_stripe.forms import FormError, parse_form

SECRET = "whsec_test_secret"
KEY = "sk_test_fake"
TEAM = {"id": "price_team", "lookup_key": "team_monthly", "unit_amount": 1200, "nickname": "Team"}
RUNS = {"id": "price_runs", "lookup_key": "runs_metered", "unit_amount": 2, "usage_type": "metered",
        "meter_event_name": "flow_runs", "nickname": "Runs"}


class WebhookReceiver:
    """A tiny endpoint that keeps every delivery (raw body and headers) and answers `status`."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                if receiver.on_event is not None:
                    receiver.on_event(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhooks/stripe"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self, secret: str = SECRET) -> list[stripe.Event]:
        """Every delivery, verified exactly as a receiver does it."""
        return [stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
                for headers, body in self.received]

    def types(self) -> list[str]:
        return [event.type for event in self.events()]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def fake(receiver: WebhookReceiver) -> Iterator[FakeStripe]:
    with FakeStripe(webhook_url=receiver.url, webhook_secret=SECRET, prices=[TEAM, RUNS]) as fake:
        yield fake


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": fake.base_url}, max_network_retries=0)


def plain(obj: Any) -> Any:
    """A library object as plain dicts and lists (the library's objects are not dicts)."""
    return obj.to_dict()


def _subscribe(client: stripe.StripeClient, fake: FakeStripeClient, seats: int = 3) -> dict[str, Any]:
    customer = client.v1.customers.create({"email": "owner@example.com", "metadata": {"workspace": "w1"}})
    session = client.v1.checkout.sessions.create({
        "mode": "subscription", "customer": customer.id,
        "line_items": [{"price": "price_team", "quantity": seats}],
        "success_url": "http://app.test/billing?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://app.test/billing", "client_reference_id": "w1",
        "subscription_data": {"metadata": {"workspace": "w1"}},
    })
    return fake.complete_checkout(session.id)


# -- the real library against the fake -------------------------------------------------------

def test_stripe_client_creates_customer_checkout_and_portal_sessions(fake: FakeStripe, client: stripe.StripeClient):
    customer = client.v1.customers.create({"email": "owner@example.com", "name": "Ada",
                                           "metadata": {"workspace": "w1"}})
    assert customer.id.startswith("cus_") and customer.object == "customer"
    assert customer.livemode is False and isinstance(customer.created, int)
    assert plain(customer.metadata) == {"workspace": "w1"}

    session = client.v1.checkout.sessions.create({
        "mode": "subscription", "customer": customer.id,
        "line_items": [{"price": "price_team", "quantity": 4}],
        "success_url": "http://app.test/ok", "cancel_url": "http://app.test/no",
        "client_reference_id": "w1", "metadata": {"workspace": "w1"},
        "subscription_data": {"metadata": {"workspace": "w1"}},
    })
    assert session.id.startswith("cs_") and session.object == "checkout.session"
    assert session.url == f"{fake.base_url}/_fake/checkout/{session.id}"
    assert (session.status, session.payment_status, session.amount_total) == ("open", "unpaid", 4800)
    assert session.customer == customer.id and session.client_reference_id == "w1"
    assert client.v1.checkout.sessions.retrieve(session.id).id == session.id

    portal = client.v1.billing_portal.sessions.create({"customer": customer.id, "return_url": "http://app.test/b"})
    assert portal.id.startswith("bps_") and portal.object == "billing_portal.session"
    assert portal.url == f"{fake.base_url}/_fake/portal/{portal.id}"

    updated = client.v1.customers.update(customer.id, {"name": "Ada L", "metadata": {"plan": "team"}})
    assert updated.name == "Ada L" and plain(updated.metadata) == {"workspace": "w1", "plan": "team"}
    assert client.v1.customers.retrieve(customer.id).name == "Ada L"
    assert client.v1.prices.retrieve("price_team").unit_amount == 1200
    found = client.v1.prices.list({"lookup_keys": ["team_monthly", "runs_metered"]})
    assert plain(found)["object"] == "list" and {p.id for p in found.data} == {"price_team", "price_runs"}


def test_global_api_base_works_over_plain_http(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(stripe, "api_key", KEY)
    monkeypatch.setattr(stripe, "api_base", fake.base_url)
    customer = stripe.Customer.create(email="global@example.com")
    session = stripe.checkout.Session.create(
        mode="subscription", customer=customer.id, line_items=[{"price": "price_team", "quantity": 1}],
        success_url="http://app.test/ok")
    assert stripe.Customer.retrieve(customer.id).email == "global@example.com"
    assert stripe.checkout.Session.retrieve(session.id).customer == customer.id
    assert fake.requests(method="POST", path="/v1/customers")[0]["headers"]["Stripe-Version"]


def test_injected_500s_then_library_retries_with_the_same_key_yield_one_customer(fake: FakeStripe):
    fake.fail_next("POST", "/v1/customers", count=2, status=500)
    retrying = stripe.StripeClient(KEY, base_addresses={"api": fake.base_url}, max_network_retries=2)
    customer = retrying.v1.customers.create({"email": "retry@example.com"})

    attempts = fake.requests(method="POST", path="/v1/customers")
    assert [a["status"] for a in attempts] == [500, 500, 200]
    assert [a["injected_failure"] for a in attempts] == [True, True, False]
    assert len({a["idempotency_key"] for a in attempts}) == 1 and attempts[0]["idempotency_key"]
    assert [c["id"] for c in fake.objects("customers")] == [customer.id]


def test_a_lost_answer_is_replayed_for_the_same_key_instead_of_creating_twice(fake: FakeStripe):
    fake.fail_next("POST", "/v1/customers", count=1, status=500, when="after")
    retrying = stripe.StripeClient(KEY, base_addresses={"api": fake.base_url}, max_network_retries=1)
    customer = retrying.v1.customers.create({"email": "lost@example.com"})

    attempts = fake.requests(method="POST", path="/v1/customers")
    assert [(a["status"], a["replayed"]) for a in attempts] == [(500, False), (200, True)]
    assert [c["id"] for c in fake.objects("customers")] == [customer.id]


def test_idempotency_key_replays_first_answer_and_refuses_other_params(fake: FakeStripe,
                                                                       client: stripe.StripeClient):
    first = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "signup-1"})
    again = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "signup-1"})
    assert again.id == first.id and len(fake.objects("customers")) == 1
    assert again.last_response is not None and again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"email": "b@example.com"}, {"idempotency_key": "signup-1"})


def test_concurrent_requests_with_one_key_create_one_customer(fake: FakeStripe, client: stripe.StripeClient):
    ids: list[str] = []

    def create() -> None:
        ids.append(client.v1.customers.create({"email": "race@example.com"}, {"idempotency_key": "race"}).id)

    threads = [threading.Thread(target=create) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 5 and len(set(ids)) == 1
    assert [c["id"] for c in fake.objects("customers")] == ids[:1]


def test_nested_form_parameters_are_parsed(fake: FakeStripe, client: stripe.StripeClient):
    customer = client.v1.customers.create({"metadata": {"workspace": "w1", "0": "zero"}})
    client.v1.checkout.sessions.create({
        "mode": "subscription", "customer": customer.id, "success_url": "http://app.test/ok",
        "line_items": [{"price": "price_team", "quantity": 2}, {"price": "price_runs"}],
        "metadata": {"workspace": "w1"}, "subscription_data": {"metadata": {"workspace": "w1"}},
    })
    params: Any = fake.requests(method="POST", path="/v1/checkout/sessions")[0]["params"]
    assert params["line_items"] == [{"price": "price_team", "quantity": "2"}, {"price": "price_runs"}]
    assert params["metadata"] == {"workspace": "w1"}
    assert params["subscription_data"] == {"metadata": {"workspace": "w1"}}
    assert fake.objects("customers")[0]["metadata"] == {"workspace": "w1", "0": "zero"}  # a map, not a list

    assert parse_form("lookup_keys[]=a&lookup_keys[]=b&a[b][c]=1&flag=true") == {
        "lookup_keys": ["a", "b"], "a": {"b": {"c": "1"}}, "flag": "true"}
    assert parse_form("items[1][quantity]=5&items[0][id]=si_1") == {"items": [{"id": "si_1"}, {"quantity": "5"}]}
    with pytest.raises(FormError):
        parse_form("a[b=1")


def test_errors_have_stripes_shape(fake: FakeStripe, client: stripe.StripeClient):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    body: Any = missing.value.json_body
    assert body["error"]["type"] == "invalid_request_error"

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create({"emial": "typo@example.com"})  # type: ignore[arg-type]
    assert unknown.value.http_status == 400 and unknown.value.param == "emial"

    with pytest.raises(stripe.InvalidRequestError) as bad_price:
        client.v1.checkout.sessions.create({"mode": "subscription", "success_url": "http://app.test/ok",
                                            "line_items": [{"price": "price_nope", "quantity": 1}]})
    assert bad_price.value.param == "line_items[0][price]"
    assert fake.objects("checkout_sessions") == []

    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_live_real", base_addresses={"api": fake.base_url}).v1.customers.list()
    request = urllib.request.Request(f"{fake.base_url}/v1/customers")
    with pytest.raises(urllib.error.HTTPError) as no_key:
        urllib.request.urlopen(request)
    assert no_key.value.code == 401
    assert json.loads(no_key.value.read())["error"]["type"] == "invalid_request_error"


def test_meter_events_are_deduplicated_by_identifier(fake: FakeStripe):
    retrying = stripe.StripeClient(KEY, base_addresses={"api": fake.base_url}, max_network_retries=2)
    usage: Any = {"event_name": "flow_runs", "payload": {"stripe_customer_id": "cus_1", "value": "3"},
             "identifier": "w1:run:42", "timestamp": int(time.time())}
    event = retrying.v1.billing.meter_events.create(usage)
    assert (event.object, event.identifier, event.payload["value"]) == ("billing.meter_event", "w1:run:42", "3")

    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        retrying.v1.billing.meter_events.create(usage)  # a new idempotency key, the same identifier
    assert duplicate.value.http_status == 400
    assert "already exists with identifier w1:run:42" in duplicate.value.user_message
    assert (duplicate.value.headers or {})["Stripe-Should-Retry"] == "false"
    usage["identifier"] = "w1:run:43"
    retrying.v1.billing.meter_events.create(usage)

    assert [e["identifier"] for e in fake.meter_events()] == ["w1:run:42", "w1:run:43"]
    assert len(fake.requests(path="/v1/billing/meter_events")) == 3  # the duplicate was not retried


# -- webhooks --------------------------------------------------------------------------------

def test_webhooks_are_signed_as_stripe_signs_them(fake: FakeStripe, receiver: WebhookReceiver):
    result = fake.send_event("customer.updated", {"id": "cus_1", "object": "customer"}, {"name": "Old"})
    assert [d["status"] for d in result["deliveries"]] == [200]
    [event] = receiver.events()
    assert event.id == result["event"]["id"] and event.id.startswith("evt_") and event.object == "event"
    assert event.data.object.id == "cus_1" and plain(event.data.previous_attributes) == {"name": "Old"}

    headers, body = receiver.received[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_wrong")
    with pytest.raises(stripe.SignatureVerificationError):  # the signature covers the raw bytes
        stripe.Webhook.construct_event(json.dumps(json.loads(body)), headers["Stripe-Signature"], SECRET)


def test_a_signed_event_can_be_posted_by_the_test_itself(fake: FakeStripe):
    sent = fake.send_event("customer.updated", {"id": "cus_1", "object": "customer"})
    signed = fake.signed_event(sent["event"]["id"])
    event = stripe.Webhook.construct_event(signed["body"], signed["signature"], SECRET)
    assert event.id == sent["event"]["id"]


def test_every_secret_signs_while_secrets_rotate(fake: FakeStripe, receiver: WebhookReceiver):
    fake.configure(webhook_secrets=["whsec_old", "whsec_new"])
    fake.send_event("ping", {"id": "x", "object": "thing"})
    signature = receiver.received[0][0]["Stripe-Signature"]
    assert signature.count("v1=") == 2
    assert receiver.events("whsec_old")[0].id == receiver.events("whsec_new")[0].id
    with pytest.raises(stripe.SignatureVerificationError):
        receiver.events(SECRET)


def test_completing_a_checkout_sends_three_events_in_order(fake: FakeStripe, client: stripe.StripeClient,
                                                           receiver: WebhookReceiver):
    # The receiver reads the API back while it handles an event, as a webhook handler may.
    seen_status: list[str] = []
    receiver.on_event = lambda event: seen_status.append(
        client.v1.subscriptions.retrieve(event["data"]["object"]["subscription"]).status
        if event["type"] == "checkout.session.completed" else "")

    result = _subscribe(client, fake, seats=3)
    assert receiver.types() == ["checkout.session.completed", "customer.subscription.created", "invoice.paid"]
    assert [d["status"] for d in result["deliveries"]] == [200, 200, 200]
    assert seen_status[0] == "active"

    completed, created, paid = receiver.events()
    subscription = client.v1.subscriptions.retrieve(created.data.object.id)
    assert completed.data.object.subscription == subscription.id and completed.data.object.status == "complete"
    assert subscription.status == "active" and plain(subscription.metadata) == {"workspace": "w1"}
    item = subscription["items"].data[0]
    assert (item.price.id, item.quantity) == ("price_team", 3)
    assert item.current_period_end > item.current_period_start
    assert paid.data.object.status == "paid" and paid.data.object.amount_paid == 3600
    assert paid.data.object.parent.subscription_details.subscription == subscription.id
    invoices = client.v1.invoices.list({"customer": str(subscription.customer), "limit": 10})
    assert [i.id for i in invoices.data] == [paid.data.object.id] and invoices.has_more is False


def test_hosted_checkout_pay_button_completes_and_redirects(fake: FakeStripe, client: stripe.StripeClient,
                                                           receiver: WebhookReceiver):
    session = client.v1.checkout.sessions.create({
        "mode": "subscription", "customer_email": "new@example.com",
        "success_url": "http://app.test/ok?s={CHECKOUT_SESSION_ID}",
        "line_items": [{"price": "price_team", "quantity": 2}]})
    assert session.url is not None
    page = urllib.request.urlopen(session.url).read().decode()
    assert '<button type="submit">Pay</button>' in page

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(urllib.request.Request(session.url, data=b"", method="POST"))
    assert answer.value.code == 303
    assert answer.value.headers["Location"] == f"http://app.test/ok?s={session.id}"
    # Checkout created the customer (none was given), so customer.created comes first.
    assert receiver.types() == ["customer.created", "checkout.session.completed", "customer.subscription.created",
                                "invoice.paid"]
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.status == "complete" and str(done.customer).startswith("cus_")
    assert client.v1.customers.retrieve(str(done.customer)).email == "new@example.com"


def test_an_unpaid_checkout_expires(fake: FakeStripe, client: stripe.StripeClient, receiver: WebhookReceiver):
    session = client.v1.checkout.sessions.create({
        "mode": "subscription", "success_url": "http://app.test/ok",
        "line_items": [{"price": "price_team", "quantity": 1}]})
    assert session.url is not None
    fake.expire_checkout(session.id)
    assert receiver.types() == ["checkout.session.expired"]
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert "is expired" in urllib.request.urlopen(session.url).read().decode()
    with pytest.raises(FakeStripeControlError):
        fake.complete_checkout(session.id)


def test_portal_page_changes_seats_and_cancels(fake: FakeStripe, client: stripe.StripeClient,
                                               receiver: WebhookReceiver):
    sub = _subscribe(client, fake, seats=3)["subscription"]
    portal = client.v1.billing_portal.sessions.create({"customer": sub["customer"], "return_url": "http://app.test/b"})
    assert "Change seats" in urllib.request.urlopen(portal.url).read().decode()
    receiver.received.clear()

    def submit(fields: str) -> str:
        return urllib.request.urlopen(urllib.request.Request(portal.url, data=fields.encode())).read().decode()

    page = submit(f"subscription={sub['id']}&action=seats&quantity=7")
    assert "Seats updated." in page and "Seats: 7" in page
    [updated] = receiver.events()
    assert updated.type == "customer.subscription.updated"
    assert updated.data.object["items"].data[0].quantity == 7
    assert plain(updated.data.previous_attributes)["items"]["data"][0]["quantity"] == 3

    submit(f"subscription={sub['id']}&action=cancel")
    assert receiver.events()[-1].data.object.cancel_at_period_end is True
    submit(f"subscription={sub['id']}&action=cancel_now")
    assert receiver.types()[-1] == "customer.subscription.deleted"
    assert client.v1.subscriptions.retrieve(sub["id"]).status == "canceled"
    assert "No active plan." in urllib.request.urlopen(portal.url).read().decode()


def test_renewal_payment_failure_and_recovery(fake: FakeStripe, client: stripe.StripeClient,
                                              receiver: WebhookReceiver):
    customer = client.v1.customers.create({"email": "usage@example.com"})
    session = client.v1.checkout.sessions.create({
        "mode": "subscription", "customer": customer.id, "success_url": "http://app.test/ok",
        "line_items": [{"price": "price_team", "quantity": 2}, {"price": "price_runs"}]})
    sub = fake.complete_checkout(session.id)["subscription"]
    for n, value in enumerate(["5", "7"]):
        client.v1.billing.meter_events.create({"event_name": "flow_runs", "identifier": f"r{n}",
                                               "payload": {"stripe_customer_id": customer.id, "value": value}})
    receiver.received.clear()

    renewal = fake.advance_period(sub["id"])
    assert receiver.types() == ["customer.subscription.updated", "invoice.paid"]
    old_item, new_item = sub["items"]["data"][0], renewal["subscription"]["items"]["data"][0]
    assert new_item["current_period_start"] == old_item["current_period_end"]
    assert {line["quantity"] for line in renewal["invoice"]["lines"]["data"]} == {2, 12}
    assert renewal["invoice"]["amount_paid"] == 2 * 1200 + 12 * 2

    receiver.received.clear()
    failed = fake.fail_payment(sub["id"])
    assert receiver.types() == ["invoice.payment_failed", "customer.subscription.updated"]
    assert failed["invoice"]["status"] == "open" and failed["subscription"]["status"] == "past_due"
    assert plain(receiver.events()[1].data.previous_attributes)["status"] == "active"

    fake.pay_invoice(failed["invoice"]["id"])
    assert client.v1.subscriptions.retrieve(sub["id"]).status == "active"
    assert len(client.v1.invoices.list({"customer": customer.id, "limit": 2}).data) == 2
    assert client.v1.invoices.list({"customer": customer.id, "limit": 2}).has_more is True


def test_held_events_are_released_in_the_order_asked(fake: FakeStripe, client: stripe.StripeClient,
                                                     receiver: WebhookReceiver):
    fake.hold_events(True)
    result = _subscribe(client, fake)
    assert result["deliveries"] == [] and receiver.received == []
    ids = [e["id"] for e in result["events"]]
    assert [e["id"] for e in fake.pending_events()][-3:] == ids

    deliveries = fake.release_events(list(reversed(ids)))
    assert [d["event_id"] for d in deliveries] == list(reversed(ids))
    assert receiver.types() == ["invoice.paid", "customer.subscription.created", "checkout.session.completed"]
    with pytest.raises(FakeStripeControlError):
        fake.release_events([ids[0]])  # already delivered


def test_replay_sends_the_same_event_again(fake: FakeStripe, receiver: WebhookReceiver):
    sent = fake.send_event("invoice.paid", {"id": "in_1", "object": "invoice", "status": "paid"})
    fake.replay_event(sent["event"]["id"])
    first, second = receiver.events()
    assert first.id == second.id == sent["event"]["id"]
    assert json.loads(receiver.received[0][1]) == json.loads(receiver.received[1][1])


def test_api_caused_events_wait_for_release_or_go_at_once_in_async_mode(fake: FakeStripe,
                                                                          client: stripe.StripeClient,
                                                                          receiver: WebhookReceiver):
    sub = _subscribe(client, fake)["subscription"]
    receiver.received.clear()
    item = sub["items"]["data"][0]["id"]
    client.v1.subscriptions.update(sub["id"], {"items": [{"id": item, "quantity": 5}]})
    assert receiver.received == []
    pending = [e for e in fake.pending_events() if e["type"] == "customer.subscription.updated"]
    assert pending[0]["request"]["idempotency_key"]
    fake.release_events([pending[0]["id"]])
    assert receiver.types() == ["customer.subscription.updated"]

    fake.configure(api_events="async")
    client.v1.subscriptions.cancel(sub["id"])
    deadline = time.monotonic() + 5
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert receiver.types()[-1] == "customer.subscription.deleted"


def test_subscription_updates_follow_stripes_item_rules(fake: FakeStripe, client: stripe.StripeClient):
    fake.seed_price(id="price_business", unit_amount=3000)
    sub = _subscribe(client, fake)["subscription"]
    item = sub["items"]["data"][0]["id"]

    changed = client.v1.subscriptions.update(sub["id"], {"items": [{"id": item, "price": "price_business"}],
                                                         "cancel_at_period_end": True})
    assert [(i.id, i.price.id, i.quantity) for i in changed["items"].data] == [(item, "price_business", 3)]
    assert changed.cancel_at == changed["items"].data[0].current_period_end

    added = client.v1.subscriptions.update(sub["id"], {"items": [{"price": "price_team"}]})
    assert [i.price.id for i in added["items"].data] == ["price_business", "price_team"]  # no id: added
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub["id"], {"items": [{"price": "price_team"}]})

    client.v1.subscriptions.cancel(sub["id"])
    assert client.v1.subscriptions.list({"customer": sub["customer"]}).data == []
    assert len(client.v1.subscriptions.list({"customer": sub["customer"], "status": "all"}).data) == 1
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub["id"], {"items": [{"id": item, "quantity": 9}]})


# -- a fake in a process of its own ----------------------------------------------------------

def test_separate_process_mode(receiver: WebhookReceiver):
    with FakeStripeProcess(webhook_url=receiver.url, webhook_secret=SECRET) as fake:
        assert fake.health()["ok"] is True and urlsplit(fake.base_url).hostname == "127.0.0.1"
        fake.seed_price(**TEAM)
        client = stripe.StripeClient(KEY, base_addresses={"api": fake.base_url})
        result = _subscribe(client, fake)
        assert [d["status"] for d in result["deliveries"]] == [200, 200, 200]
        assert receiver.types() == ["checkout.session.completed", "customer.subscription.created", "invoice.paid"]
        assert len(fake.objects("customers")) == 1
