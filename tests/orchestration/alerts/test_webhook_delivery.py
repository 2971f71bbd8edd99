"""Outbound webhooks against an independent receiver (tests/orchestration/alerts/receiver.py): the
signature verifies, a replay is rejected, a failing receiver gets retries with backoff until it
accepts, a receiver that never accepts ends the delivery failed after the last try, redirects are
not followed, two workers never send one delivery twice. Time moves with time_machine, never sleeps."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from orchestration.alerts.delivery import MAX_ATTEMPTS, backoff_seconds, send_delivery

from .receiver import Receiver, delivery, make_channel, make_incident, queue, sign, timeline

pytestmark = pytest.mark.postgres

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _private_targets_allowed(settings):
    # The receiver listens on 127.0.0.1, which A2 refuses unless the operator allows it.
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True


def _webhook(world, receiver):
    channel = make_channel(world, "webhook", {"url": receiver.url()}, name="ops hook")
    receiver.secret = channel.secret
    return channel


def test_a_delivery_is_signed_and_the_independent_receiver_verifies_it(world_a, monkeypatch,
                                                                       django_capture_on_commit_callbacks):
    events: list[dict] = []
    with Receiver(secret="unknown yet") as receiver:
        channel = _webhook(world_a, receiver)
        incident = make_incident(world_a, [channel], runs=3)
        (queued,) = queue(incident, "opened")

        monkeypatch.setattr("core.events._send", lambda groups, event: events.append({"groups": groups, **event}))
        with django_capture_on_commit_callbacks(execute=True):
            assert send_delivery(queued.pk) == "delivered"

    (request,) = receiver.requests
    assert (request.status, request.reason) == (200, "accepted")
    assert request.headers["Flowdeck-Delivery"] == str(queued.pk)
    assert request.headers["Flowdeck-Event"] == "incident.opened"
    body = request.json
    assert body["id"] == str(queued.pk) and body["type"] == "incident.opened"
    assert body["incident"]["id"] == str(incident.pk)
    assert body["incident"]["title"] == incident.title and body["incident"]["cause"] == incident.cause
    assert body["incident"]["run_count"] == 3 and len(body["incident"]["runs"]) == 3
    assert all(f"/w/{world_a.workspace.slug}/runs/{run['id']}" in run["url"] for run in body["incident"]["runs"])
    # the attempt is logged without the signature's digest, and the secret is nowhere in the row
    sent = delivery(queued.pk)
    assert (sent.status, sent.attempts, sent.last_status_code) == ("delivered", 1, 200)
    (attempt,) = sent.attempt_rows.all()
    assert attempt.status_code == 200 and "accepted" in attempt.response_excerpt
    assert attempt.request["headers"]["Flowdeck-Signature"].endswith("v1=…")
    assert channel.secret not in json.dumps(attempt.request) + json.dumps(sent.payload)
    assert request.headers["Flowdeck-Signature"].split("v1=")[1] not in json.dumps(attempt.request)
    assert timeline(incident)[-1][0] == "notified"
    # open incident and channel pages hear of it (they refetch on incident.* events)
    assert [(e["type"], e["data"]["id"]) for e in events] == [("incident.updated", str(incident.pk))]


def test_the_receiver_rejects_a_replay_a_forgery_and_a_stale_timestamp(world_a):
    with Receiver(secret="unknown yet") as receiver:
        channel = _webhook(world_a, receiver)
        (queued,) = queue(make_incident(world_a, [channel]), "opened")
        assert send_delivery(queued.pk) == "delivered"
        original = receiver.requests[0]
        headers = {k: v for k, v in original.headers.items() if k.lower() not in ("host", "content-length")}

        # the very same request again (same t, same signature): a replay
        assert receiver.post(headers, original.body) == 409
        # the same signature over another body
        assert receiver.post(headers, original.body.replace(b"incident.opened", b"incident.resolved")) == 401
        # a correctly signed request whose timestamp is more than five minutes old
        stale = int(time.time()) - 400
        assert receiver.post({**headers, "Flowdeck-Signature": receiver.sign(stale, original.body)},
                             original.body) == 400
        # a fresh signature with another secret
        forged = sign("another secret", int(time.time()), original.body)
        assert receiver.post({**headers, "Flowdeck-Signature": forged}, original.body) == 401
    assert [r.reason for r in receiver.requests] == ["accepted", "replayed", "bad signature", "too old",
                                                      "bad signature"]


def test_a_receiver_failing_twice_gets_three_tries_with_backoff_and_the_same_body(world_a):
    with time_machine.travel(START, tick=True) as clock, Receiver(secret="unknown yet", fail_first=2) as receiver:
        channel = _webhook(world_a, receiver)
        incident = make_incident(world_a, [channel])
        (queued,) = queue(incident, "opened")

        assert send_delivery(queued.pk) == "retrying"
        first = delivery(queued.pk)
        assert first.attempts == 1 and first.last_status_code == 500
        assert timedelta(seconds=4) < first.next_attempt_at - datetime.now(UTC) <= timedelta(seconds=5)
        assert send_delivery(queued.pk) is None  # not due yet: nothing is sent
        clock.shift(backoff_seconds(1))
        assert send_delivery(queued.pk) == "retrying"
        assert delivery(queued.pk).next_attempt_at - datetime.now(UTC) > timedelta(seconds=9)  # 10 s now
        clock.shift(backoff_seconds(2))
        assert send_delivery(queued.pk) == "delivered"

    done = delivery(queued.pk)
    assert (done.status, done.attempts, done.delivered_at is not None) == ("delivered", 3, True)
    assert [(a.number, a.status_code) for a in done.attempt_rows.all()] == [(1, 500), (2, 500), (3, 200)]
    assert [r.status for r in receiver.requests] == [500, 500, 200]
    # one delivery: the same id and body on every try, a new timestamp each time
    assert len({r.body for r in receiver.requests}) == 1
    assert {r.headers["Flowdeck-Delivery"] for r in receiver.requests} == {str(queued.pk)}
    assert len({r.headers["Flowdeck-Signature"].split(",")[0] for r in receiver.requests}) == 3
    assert [kind for kind, _ in timeline(incident)] == ["notified"]


def test_a_receiver_that_never_accepts_fails_the_delivery_after_the_last_try(world_a):
    with time_machine.travel(START, tick=True) as clock, Receiver(secret="unknown yet", fail_first=99) as receiver:
        channel = _webhook(world_a, receiver)
        incident = make_incident(world_a, [channel])
        (queued,) = queue(incident, "opened")
        statuses = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            statuses.append(send_delivery(queued.pk))
            clock.shift(backoff_seconds(attempt))
        clock.shift(3600)
        assert send_delivery(queued.pk) is None  # nothing after the last try

    assert statuses == ["retrying"] * (MAX_ATTEMPTS - 1) + ["failed"]
    failed = delivery(queued.pk)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", MAX_ATTEMPTS, None)
    assert "500" in failed.last_error
    assert len(receiver.requests) == MAX_ATTEMPTS
    kinds = timeline(incident)
    assert [kind for kind, _ in kinds] == ["notification_failed"]
    assert "ops hook" in kinds[0][1] and f"after {MAX_ATTEMPTS} tries" in kinds[0][1]


def test_backoff_doubles_from_five_seconds_and_is_capped():
    assert [backoff_seconds(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 320, 600]


def test_a_redirect_is_not_followed(world_a):
    with Receiver() as elsewhere, Receiver(secret="x", status=302, location=elsewhere.url()) as receiver:
        channel = _webhook(world_a, receiver)
        (queued,) = queue(make_incident(world_a, [channel]), "opened")
        assert send_delivery(queued.pk) == "retrying"
    assert len(receiver.requests) == 1 and elsewhere.requests == []
    assert delivery(queued.pk).last_status_code == 302


def test_a_disabled_channel_fails_its_delivery_with_a_clear_error(world_a):
    from core.tenancy import rls_bypass

    with Receiver(secret="x") as receiver:
        channel = _webhook(world_a, receiver)
        incident = make_incident(world_a, [channel])
        (queued,) = queue(incident, "opened")
        with rls_bypass():
            channel.is_enabled = False
            channel.save(update_fields=["is_enabled"])
        assert send_delivery(queued.pk) == "failed"
    assert receiver.requests == []
    failed = delivery(queued.pk)
    assert "disabled" in failed.last_error and failed.status == "failed"
    assert timeline(incident)[-1][0] == "notification_failed"


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_one_delivery_at_once(world_a):
    # Worker 1 is mid-request (the receiver holds its answer); worker 2 asks to send the same
    # delivery meanwhile and finds it claimed; the receiver sees exactly one request.
    hold = threading.Event()
    with Receiver(secret="x", hold=hold) as receiver:
        channel = _webhook(world_a, receiver)
        (queued,) = queue(make_incident(world_a, [channel]), "opened")
        results: list = []

        def worker() -> None:
            from django.db import connection

            try:
                results.append(send_delivery(queued.pk))
            finally:
                connection.close()

        first = threading.Thread(target=worker)
        first.start()
        assert receiver.arrived.wait(timeout=30)
        second = send_delivery(queued.pk)
        hold.set()
        first.join(timeout=30)

    assert second is None and results == ["delivered"]
    assert len(receiver.requests) == 1
    assert delivery(queued.pk).attempts == 1
