"""Stripe, through the real `stripe` library against the local fake Stripe (tests/fake_stripe):
checkout and the portal for Owners only, webhooks verified, applied once, in any order (F1–F3),
outbound calls idempotent (F4), overage sent once."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from accounts.models import AuditLogEntry, Role
from billing.models import RunMeter, StripeEvent, Subscription, SubscriptionStatus
from billing.overage import report_overage
from billing.quotas import apply_limits_to_meter
from billing.stripe_gateway import send_meter_event
from core.tenancy import rls_bypass
from orchestration.models import FlowRun
from tests.billing.conftest import flow_of, set_free_runs
from tests.fake_stripe import FakeStripe

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("billing_on")]

SECRET = "whsec_test_flowdeck"
WEBHOOK = "/api/v1/billing/stripe-webhook/"


@pytest.fixture(scope="module")
def running_fake() -> Iterator[FakeStripe]:
    with FakeStripe(webhook_secret=SECRET, prices=[
        {"id": "price_seat", "lookup_key": "flowdeck_standard_seat", "unit_amount": 4000},
    ]) as fake:
        yield fake


@pytest.fixture
def fake(running_fake: FakeStripe, settings: Any) -> FakeStripe:
    running_fake.reset()
    running_fake.seed_price(id="price_seat", lookup_key="flowdeck_standard_seat", unit_amount=4000)
    running_fake.hold_events(True)  # events are delivered by the test, through Django's test client
    _delivered.clear()
    settings.STRIPE_SECRET_KEY = "sk_test_flowdeck"
    settings.STRIPE_API_BASE = running_fake.base_url
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_old_one", SECRET]
    return running_fake


_delivered: set[str] = set()


def deliver(fake: FakeStripe, event_ids: list[str] | None = None) -> list[dict]:
    """Post events to the webhook endpoint, signed as Stripe signs them: these, in this order, or
    every held event not posted yet."""
    ids = event_ids if event_ids is not None else [
        e["id"] for e in fake.pending_events() if e["id"] not in _delivered]
    answers = []
    for event_id in ids:
        _delivered.add(event_id)
        signed = fake.signed_event(event_id)
        response = Client().post(WEBHOOK, signed["body"], content_type="application/json",
                                 HTTP_STRIPE_SIGNATURE=signed["signature"])
        assert response.status_code == 200, response.content
        answers.append(response.json())
    return answers


def subscription_of(world) -> Subscription:
    with rls_bypass():
        return Subscription.objects.unscoped().select_related("plan").get(workspace=world.workspace)


def checkout(world, fake: FakeStripe, seats: int = 5) -> tuple[str, str]:
    """An Owner buys Standard; returns (session id, subscription id) once the fake completed it."""
    response = world.client(Role.OWNER).post(world.url("billing/checkout/"), {"plan": "standard", "seats": seats},
                                             format="json")
    assert response.status_code == 200, response.content
    session_id = response.json()["url"].rstrip("/").rsplit("/", 1)[-1]
    done = fake.complete_checkout(session_id)
    subscription_id = fake.objects("subscriptions")[0]["id"]
    assert done
    return session_id, subscription_id


def test_an_owner_upgrades_through_checkout_and_the_webhooks_apply_the_plan(world_a, fake):
    # given: Free, out of runs
    set_free_runs(0)
    flow = flow_of(world_a)
    refused = world_a.client(Role.DEVELOPER, key=True).post(world_a.url("flow-runs/"), {"flow": str(flow.pk)},
                                                            format="json")
    # when
    _session, sub_id = checkout(world_a, fake, seats=6)
    results = deliver(fake)
    # then: Standard with 6 seats, and runs allowed again
    assert refused.status_code == 402
    assert {r["result"] for r in results} <= {"linked", "applied", "ignored"}
    row = subscription_of(world_a)
    assert (row.plan.code, row.status, row.seats, row.stripe_subscription_id) == ("standard", "active", 6, sub_id)
    assert row.current_period_end > timezone.now()
    sessions = fake.requests(method="POST", path="/v1/checkout/sessions")
    assert sessions[0]["params"]["line_items"] == [{"price": "price_seat", "quantity": "6"}]
    assert sessions[0]["params"]["client_reference_id"] == str(world_a.workspace.pk)
    again = world_a.client(Role.DEVELOPER, key=True).post(world_a.url("flow-runs/"), {"flow": str(flow.pk)},
                                                          format="json")
    assert again.status_code == 201
    with rls_bypass():
        assert AuditLogEntry.objects.unscoped().filter(workspace=world_a.workspace,
                                                       action="billing.subscription_changed").exists()


def test_only_owners_start_checkout_or_the_portal(world_a, fake):
    # when
    admin_checkout = world_a.client(Role.ADMIN).post(world_a.url("billing/checkout/"),
                                                     {"plan": "standard", "seats": 5}, format="json")
    admin_portal = world_a.client(Role.ADMIN).post(world_a.url("billing/portal/"))
    viewer_sees = world_a.client(Role.VIEWER).get(world_a.url("billing/"))
    # then
    assert (admin_checkout.status_code, admin_portal.status_code) == (403, 403)
    assert viewer_sees.status_code == 200 and viewer_sees.json()["can_manage"] is False
    assert fake.requests(method="POST") == []


def test_checkout_refuses_fewer_seats_than_members(world_a, fake):
    # when: 4 members, 3 seats asked
    response = world_a.client(Role.OWNER).post(world_a.url("billing/checkout/"), {"plan": "standard", "seats": 3},
                                               format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_few_seats"


def test_another_workspace_cannot_touch_billing(world_a, world_b, fake):
    # when
    answers = [
        world_b.client(Role.OWNER).get(world_a.url("billing/")).status_code,
        world_b.client(Role.OWNER).post(world_a.url("billing/checkout/"), {"plan": "standard", "seats": 5},
                                        format="json").status_code,
        world_b.client(Role.OWNER, key=True).post(world_a.url("billing/portal/")).status_code,
    ]
    # then
    assert answers == [404, 404, 404]


def test_a_replayed_event_changes_nothing(world_a, fake):
    # given: a completed upgrade
    checkout(world_a, fake)
    events = deliver(fake) and fake.pending_events()
    with rls_bypass():
        audit_before = AuditLogEntry.objects.unscoped().filter(workspace=world_a.workspace).count()
    # when: every event again
    again = deliver(fake, [e["id"] for e in events])
    # then
    assert {a["result"] for a in again} == {"duplicate"}
    with rls_bypass():
        assert AuditLogEntry.objects.unscoped().filter(workspace=world_a.workspace).count() == audit_before > 0


def test_a_bad_signature_is_refused_and_writes_nothing(world_a, fake):
    # given
    checkout(world_a, fake)
    event_id = fake.pending_events()[0]["id"]
    signed = fake.signed_event(event_id)
    # when: signed with another secret, and tampered with
    forged = signed["signature"].replace("v1=", "v1=00", 1)
    bad = Client().post(WEBHOOK, signed["body"], content_type="application/json", HTTP_STRIPE_SIGNATURE=forged)
    tampered = Client().post(WEBHOOK, signed["body"].replace('"id"', '"id" ', 1),
                             content_type="application/json", HTTP_STRIPE_SIGNATURE=signed["signature"])
    unsigned = Client().post(WEBHOOK, signed["body"], content_type="application/json")
    # then
    assert [r.status_code for r in (bad, tampered, unsigned)] == [400, 400, 400]
    assert bad.json()["error"]["code"] == "invalid_signature"
    assert not StripeEvent.objects.exists()
    assert subscription_of(world_a).plan.code == "free"


def test_a_stale_update_arriving_after_the_deletion_leaves_it_cancelled(world_a, fake):
    # given: an active subscription, then a seat change and a cancellation, held
    _session, sub_id = checkout(world_a, fake)
    deliver(fake)
    fake.portal_update(sub_id, quantity=8)
    updated = [e["id"] for e in fake.pending_events() if e["type"] == "customer.subscription.updated"
               and e["id"] not in _delivered]
    fake.portal_cancel(sub_id, at_period_end=False)
    deleted = [e["id"] for e in fake.pending_events() if e["type"] == "customer.subscription.deleted"]
    # when: the deletion first, the older update after it
    results = deliver(fake, deleted + updated)
    # then
    assert [r["result"] for r in results][1].startswith("stale")
    row = subscription_of(world_a)
    assert row.status == SubscriptionStatus.CANCELED


def test_a_failed_payment_keeps_paid_limits_through_the_grace_period_then_free_without_deleting(world_a, fake):
    # given: Standard, then a failed renewal payment
    set_free_runs(1)
    _session, sub_id = checkout(world_a, fake)
    deliver(fake)
    flow = flow_of(world_a)
    client = world_a.client(Role.DEVELOPER, key=True)
    for _ in range(3):
        assert client.post(world_a.url("flow-runs/"), {"flow": str(flow.pk)}, format="json").status_code == 201
    fake.fail_payment(sub_id)
    deliver(fake)
    row = subscription_of(world_a)
    # when: within the grace period, and after it
    within = client.post(world_a.url("flow-runs/"), {"flow": str(flow.pk)}, format="json").status_code
    with rls_bypass():
        Subscription.objects.unscoped().filter(pk=row.pk).update(grace_ends_at=timezone.now() - dt.timedelta(seconds=1))
        RunMeter.objects.unscoped().filter(workspace=world_a.workspace).delete()  # a new period on Free
    after = client.post(world_a.url("flow-runs/"), {"flow": str(flow.pk)}, format="json")
    after_2 = client.post(world_a.url("flow-runs/"), {"flow": str(flow.pk)}, format="json")
    # then
    assert row.status == SubscriptionStatus.PAST_DUE and row.grace_ends_at > timezone.now()
    assert within == 201
    assert (after.status_code, after_2.status_code) == (201, 402)
    assert after_2.json()["error"]["details"]["plan"] == "free"
    with rls_bypass():
        assert FlowRun.objects.unscoped().filter(workspace=world_a.workspace).count() == 5  # nothing deleted


def test_a_500_on_the_first_customer_create_still_yields_one_customer(world_a, fake):
    # given: Stripe fails the first customer create after doing it
    fake.fail_next("POST", "/v1/customers", count=1, status=500, when="after")
    # when
    response = world_a.client(Role.OWNER).post(world_a.url("billing/portal/"))
    # then
    assert response.status_code == 200, response.content
    assert len(fake.objects("customers")) == 1
    keys = {r["idempotency_key"] for r in fake.requests(method="POST", path="/v1/customers")}
    assert keys == {f"flowdeck-customer-{world_a.workspace.pk}"}
    assert subscription_of(world_a).stripe_customer_id == fake.objects("customers")[0]["id"]


def _standard_with_overage(world, fake: FakeStripe, runs: int, allowance: int = 2) -> None:
    checkout(world, fake)
    deliver(fake)
    with rls_bypass():
        Subscription.objects.unscoped().filter(workspace=world.workspace).update(custom_runs_per_period=allowance)
    apply_limits_to_meter(world.workspace.pk)
    flow = flow_of(world)
    client = world.client(Role.DEVELOPER, key=True)
    for _ in range(runs):
        assert client.post(world.url("flow-runs/"), {"flow": str(flow.pk)}, format="json").status_code == 201


def test_overage_is_sent_once_when_stripe_answers_are_lost(world_a, fake):
    # given: Standard allowing 2 runs, 5 created; Stripe records the first send but its answer is lost
    _standard_with_overage(world_a, fake, runs=5)
    fake.fail_next("POST", "/v1/billing/meter_events", count=1, status=500, when="after")
    # when: the job runs three times
    sent = [report_overage() for _ in range(3)]
    # then: one meter event of 3 runs (the library's retry carried the same idempotency key)
    assert sent == [3, 0, 0]
    assert [(e["payload"]["value"], e["event_name"]) for e in fake.meter_events()] == [("3", "flowdeck_runs")]
    with rls_bypass():
        assert RunMeter.objects.unscoped().get(workspace=world_a.workspace).overage_reported == 3


def test_a_batch_stripe_never_got_is_sent_on_the_next_run_and_new_overage_after_it(world_a, fake):
    # given: Stripe down for the first run
    _standard_with_overage(world_a, fake, runs=5)
    fake.fail_next("POST", "/v1/billing/meter_events", count=3, status=500, when="before")
    # when
    first = report_overage()
    second = report_overage()
    flow = flow_of(world_a)
    world_a.client(Role.DEVELOPER, key=True).post(world_a.url("flow-runs/"), {"flow": str(flow.pk)}, format="json")
    third = report_overage()
    # then
    assert (first, second, third) == (0, 3, 1)
    assert [e["payload"]["value"] for e in fake.meter_events()] == ["3", "1"]
    assert len({e["identifier"] for e in fake.meter_events()}) == 2


def test_a_batch_a_dead_worker_already_sent_is_counted_once(world_a, fake):
    # given: a worker wrote its batch down, sent it, and died before recording that it had
    _standard_with_overage(world_a, fake, runs=5)
    with rls_bypass():
        meter = RunMeter.objects.unscoped().get(workspace=world_a.workspace)
        RunMeter.objects.unscoped().filter(pk=meter.pk).update(overage_sending=3)
    send_meter_event(event_name="flowdeck_runs", customer=subscription_of(world_a).stripe_customer_id, value=3,
                     identifier=f"flowdeck-meter-{meter.pk}-runs-0-3", timestamp=int(timezone.now().timestamp()) - 5)
    # when
    sent = report_overage()
    # then: Stripe refused the repeat; the batch counts as sent, once
    assert sent == 3
    assert [e["payload"]["value"] for e in fake.meter_events()] == ["3"]
    with rls_bypass():
        assert RunMeter.objects.unscoped().get(pk=meter.pk).overage_reported == 3


def test_usage_sees_the_subscription_period(world_a, fake):
    # given
    checkout(world_a, fake)
    deliver(fake)
    # when
    usage = world_a.client(Role.VIEWER).get(world_a.url("usage/")).json()
    # then
    row = subscription_of(world_a)
    assert usage["plan"] == "standard"
    assert usage["seats_limit"] == 5
    assert usage["period_start"].startswith(row.current_period_start.strftime("%Y-%m-%dT%H:%M"))


@pytest.mark.django_db(transaction=True)
def test_two_workers_reporting_at_once_send_the_overage_once(fake):
    # given: committed data, 3 runs of overage
    from tests.conftest import build_world

    world = build_world("acme")
    _standard_with_overage(world, fake, runs=5)
    barrier = threading.Barrier(2)
    sent: list[int] = []

    def worker() -> None:
        try:
            barrier.wait()
            sent.append(report_overage())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert sorted(sent) == [0, 3]
    assert [e["payload"]["value"] for e in fake.meter_events()] == ["3"]


def test_an_event_that_fails_to_apply_is_rolled_back_and_answers_5xx_so_stripe_sends_it_again(world_a, fake):
    # given: an upgrade, then an update whose seat count Flowdeck cannot read
    _session, sub_id = checkout(world_a, fake)
    deliver(fake)
    broken = fake.send_event("customer.subscription.updated", {
        **fake.objects("subscriptions")[0], "items": {"object": "list", "data": [{"quantity": "many"}]},
        "status": "past_due"})["event"]
    signed = fake.signed_event(broken["id"])
    # when
    response = Client().post(WEBHOOK, signed["body"], content_type="application/json",
                             HTTP_STRIPE_SIGNATURE=signed["signature"])
    # then: nothing of it stays, not even its id, so Stripe's next try is applied
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhook_failed"
    assert not StripeEvent.objects.filter(pk=broken["id"]).exists()
    assert subscription_of(world_a).status == SubscriptionStatus.ACTIVE


def test_without_billing_or_stripe_buying_answers_409_saying_which(world_a, settings):
    # given: billing off, then on without a Stripe key
    settings.FLOWDECK_BILLING = False
    off = world_a.client(Role.OWNER).post(world_a.url("billing/portal/"))
    settings.FLOWDECK_BILLING = True
    settings.STRIPE_SECRET_KEY = ""
    unconnected = world_a.client(Role.OWNER).post(world_a.url("billing/checkout/"), {"plan": "standard", "seats": 5},
                                                  format="json")
    # then
    assert (off.status_code, off.json()["error"]["code"]) == (409, "billing_disabled")
    assert (unconnected.status_code, unconnected.json()["error"]["code"]) == (409, "billing_not_connected")


def test_the_billing_page_lists_the_invoices_stripe_has(world_a, fake):
    # given: a paid checkout (one paid invoice at the fake)
    checkout(world_a, fake, seats=4)
    deliver(fake)
    # when
    owner = world_a.client(Role.OWNER).get(world_a.url("billing/")).json()
    viewer = world_a.client(Role.VIEWER).get(world_a.url("billing/")).json()
    # then
    stripe_invoice = fake.objects("invoices")[0]
    assert [(i["id"], i["status"], i["amount_paid"]) for i in owner["invoices"]] == [
        (stripe_invoice["id"], "paid", stripe_invoice["amount_paid"])]
    assert owner["invoices_error"] == ""
    assert owner["subscription"]["plan"]["code"] == "standard" and owner["can_manage"] is True
    assert viewer["invoices"] == [] and viewer["can_manage"] is False


def _signed_at(body: str, secret: str, timestamp: int) -> str:
    """A Stripe-Signature header made the way Stripe makes one, at a chosen time."""
    import hashlib
    import hmac

    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def test_signatures_older_than_five_minutes_are_refused_and_the_previous_secret_still_works(world_a, fake):
    # given: an event, re-signed by hand at chosen times, with the new and the previous secret
    checkout(world_a, fake)
    body = fake.signed_event(fake.pending_events()[0]["id"])["body"]
    now = int(timezone.now().timestamp())
    # when
    stale = Client().post(WEBHOOK, body, content_type="application/json",
                          HTTP_STRIPE_SIGNATURE=_signed_at(body, SECRET, now - 301))
    previous_secret = Client().post(WEBHOOK, body, content_type="application/json",
                                    HTTP_STRIPE_SIGNATURE=_signed_at(body, "whsec_old_one", now - 200))
    # then
    assert stale.status_code == 400
    assert previous_secret.status_code == 200


def test_seats_changed_in_the_portal_become_the_workspace_seats(world_a, fake):
    # given: Standard with 4 seats, all used by the world's members
    _session, sub_id = checkout(world_a, fake, seats=4)
    deliver(fake)
    invite = {"email": "new@example.com", "role": "viewer"}
    refused = world_a.client(Role.OWNER).post(world_a.url("invitations/"), invite, format="json")
    # when: the Owner buys a fifth seat in the portal
    fake.portal_update(sub_id, quantity=5)
    deliver(fake)
    allowed = world_a.client(Role.OWNER).post(world_a.url("invitations/"), invite, format="json")
    # then
    assert refused.status_code == 402
    assert subscription_of(world_a).seats == 5
    assert allowed.status_code == 201
