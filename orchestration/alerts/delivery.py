"""Delivering notifications: one :class:`NotificationDelivery` per (incident, channel, event),
tried until it is delivered or out of tries, each try logged as a :class:`DeliveryAttempt`.

- :func:`queue_incident_notifications` runs inside the transaction that opens or resolves an
  incident. The unique constraint ``delivery_once_per_incident_event`` and ``ON CONFLICT DO
  NOTHING`` make a second evaluator (or a second tick) add nothing; the new rows are handed to a
  Celery task after commit (in embedded mode, to a thread beside the server). If the broker is down
  they stay pending and :func:`send_due_deliveries`, a platform tick, picks them up.
- :func:`send_delivery` makes one try. It claims the row in a short transaction (``FOR UPDATE SKIP
  LOCKED``, then a lease on ``next_attempt_at``), so two workers never send one delivery at once;
  makes the call with no transaction open; then records the attempt and the outcome: delivered
  (a 2xx, or the mail accepted), retrying with exponential backoff (5 s, 10 s, 20 s … capped at
  10 minutes), or failed after :data:`MAX_ATTEMPTS` tries. Delivered and finally failed
  notifications of an incident write a line on its timeline. A resolution is sent only once the
  opening message to the same channel was delivered or gave up (a PagerDuty resolve that overtook
  its trigger would leave the page open).
- :func:`send_test_notification` (the channel page's button) sends once, synchronously, in the
  Admin's request, and returns the delivery with its attempt: the answer says whether it worked.

A2: this is the one server module that makes HTTP calls, and every one goes through
:func:`_http_post`: the target is checked right before the request (the host resolved again, every
address public unless the operator allows private ones) and the connection goes to an address that
check returned, with the host name kept for TLS and the Host header. Redirects are not followed and
proxies from the environment are not used.

Webhook signature: ``Flowdeck-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
with ``Flowdeck-Delivery`` (the delivery id, the same on every try) and ``Flowdeck-Event``. The body
is the same on every try; ``t`` is the time of the try, so a receiver rejects old or replayed
requests (docs: see the webhook section of the alerts documentation).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.authz import NotFound, Principal, authorize
from accounts.services.audit import audit_record
from core.errors import InvalidInput
from core.tenancy import rls_bypass, workspace_scope
from orchestration.alerts.channels import check_target_url, masked_url, target_url
from orchestration.alerts.messages import build_payload, event_type, incident_document
from orchestration.models import (
    DeliveryAttempt,
    Incident,
    IncidentEvent,
    NotificationChannel,
    NotificationDelivery,
)

logger = logging.getLogger(__name__)

Kind = NotificationChannel.Kind
Status = NotificationDelivery.Status
Event = NotificationDelivery.Event

MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 600
# A claimed try holds the delivery this long: longer than a try can take (resolve + connect +
# read), so only a worker that died mid-try leaves it to be tried again.
CLAIM_SECONDS = 60
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 4096
MAX_EXCERPT = 1000
# Deliveries whose task was lost are picked up by the periodic tick this long after they were due
# (with Celery; embedded mode has no tasks to lose and the tick is the retry).
DUE_GRACE_SECONDS = 30
DUE_BATCH = 200
USER_AGENT = "Flowdeck-Notifications/1.0"
ACTIVE = (Status.PENDING, Status.RETRYING)


def backoff_seconds(attempt: int) -> int:
    """The wait after failed try number ``attempt`` (1-based): 5 s, 10 s, 20 s … at most 10 min."""
    return int(min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS))


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --- queueing -----------------------------------------------------------------------------------


def queue_incident_notifications(incident: Incident, event: str) -> list[NotificationDelivery]:
    """One delivery of ``event`` ("opened" or "resolved") per enabled channel of the incident's
    policy, at most once per (incident, channel, event) however often this is called; the new
    ones are sent after the caller's transaction commits. Returns the deliveries it created."""
    if event not in (Event.OPENED, Event.RESOLVED):
        raise ValueError(f"Unknown incident event {event!r}")
    if incident.policy_id is None:
        return []
    workspace_id = incident.workspace_id
    channels = list(
        NotificationChannel.objects.for_workspace(workspace_id)
        .filter(is_enabled=True, policy_channels__policy_id=incident.policy_id)
        .select_related("workspace").distinct().order_by("name")
    )
    done = set(NotificationDelivery.objects.for_workspace(workspace_id).filter(incident=incident, event=event)
               .values_list("channel_id", flat=True))
    channels = [channel for channel in channels if channel.pk not in done]
    if not channels:
        return []
    document = incident_document(incident, channels[0].workspace.slug)
    now = timezone.now()
    rows = []
    for channel in channels:
        delivery_id = uuid.uuid4()
        rows.append(NotificationDelivery(
            id=delivery_id, workspace_id=workspace_id, channel=channel, incident=incident, event=event,
            payload=build_payload(channel, delivery_id=delivery_id, event=event, document=document),
            next_attempt_at=now, created_at=now,
        ))
    deliveries = NotificationDelivery.objects.for_workspace(workspace_id)
    deliveries.bulk_create(rows, ignore_conflicts=True)
    # With ON CONFLICT DO NOTHING only the rows that exist now under our ids are ours.
    created_ids = set(deliveries.filter(pk__in=[row.pk for row in rows]).values_list("pk", flat=True))
    created = [row for row in rows if row.pk in created_ids]
    if created:
        _start_after_commit([row.pk for row in created])
    return created


def _start_after_commit(delivery_ids: list[Any]) -> None:
    def start() -> None:
        try:
            if settings.CELERY_TASK_ALWAYS_EAGER:
                # Embedded mode has no worker: send beside the server, like its periodic loop.
                threading.Thread(target=_send_in_thread, args=(delivery_ids,), daemon=True,
                                 name="flowdeck-notify").start()
            else:
                from orchestration.alerts.tasks_delivery import send_delivery_task

                for delivery_id in delivery_ids:
                    send_delivery_task.delay(str(delivery_id))
        except Exception:  # the broker is down: the rows stay pending for send_due_deliveries
            logger.exception("could not hand notifications %s to a worker; the periodic tick will send them",
                             delivery_ids)

    transaction.on_commit(start)


def _send_in_thread(delivery_ids: list[Any]) -> None:
    try:
        for delivery_id in delivery_ids:
            try:
                send_delivery(delivery_id)
            except Exception:
                logger.exception("notification %s: the try failed unexpectedly", delivery_id)
    finally:
        connection.close()  # this thread's own connection


def send_due_deliveries(now: datetime | None = None) -> int:
    """The safety net (a platform tick): deliveries that are due and that no task is sending —
    their task was lost, the broker was down, or (embedded mode) their next retry is due. With
    Celery each is handed to a task; in embedded mode each is tried here. Returns how many."""
    now = now or timezone.now()
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    due_before = now if eager else now - timedelta(seconds=DUE_GRACE_SECONDS)
    with rls_bypass():  # every workspace's deliveries; each try runs in its own workspace's scope
        due = list(
            NotificationDelivery.objects.unscoped()
            .filter(status__in=ACTIVE).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=due_before))
            .order_by("next_attempt_at").values_list("pk", flat=True)[:DUE_BATCH]
        )
    if eager:
        for delivery_id in due:
            send_delivery(delivery_id)
        return len(due)
    from orchestration.alerts.tasks_delivery import send_delivery_task

    for count, delivery_id in enumerate(due):
        try:
            send_delivery_task.delay(str(delivery_id))
        except Exception:
            logger.exception("could not hand due notifications to a worker")
            return count
    return len(due)


# --- one try ------------------------------------------------------------------------------------


@dataclass
class _Claim:
    delivery: NotificationDelivery
    channel: NotificationChannel
    number: int
    refusal: str = ""  # why nothing is sent (and the delivery fails now)
    single_try: bool = False


@dataclass
class _Outcome:
    request: dict[str, Any] = field(default_factory=dict)
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""
    duration_ms: int = 0
    final: bool = False  # no point trying again

    @property
    def ok(self) -> bool:
        return not self.error and (self.status_code is None or 200 <= self.status_code < 300)


def _workspace_of(delivery_id: Any) -> Any:
    try:
        pk = uuid.UUID(str(delivery_id))
    except ValueError:
        return None, None
    with rls_bypass():  # the task knows the id only; the rest happens in the delivery's workspace
        workspace_id = NotificationDelivery.objects.unscoped().filter(pk=pk).values_list("workspace_id",
                                                                                         flat=True).first()
    return pk, workspace_id


def send_delivery(delivery_id: Any) -> str | None:
    """One try of a delivery that is due; returns its status afterwards, or None when there was
    nothing to do (not due, already delivered or failed, being sent by another worker, gone). A
    resolution whose opening message is still being tried is not sent: it stays pending, due again
    just after the opening's next try."""
    pk, workspace_id = _workspace_of(delivery_id)
    if workspace_id is None:
        return None
    return _try(workspace_id, pk)


def _try(workspace_id: Any, pk: Any, *, single_try: bool = False) -> str | None:
    claim = _claim(workspace_id, pk, single_try)
    if claim is None or isinstance(claim, str):
        return claim
    outcome = _Outcome(error=claim.refusal, final=True) if claim.refusal else _send(claim)
    return _record(workspace_id, claim, outcome)


def _claim(workspace_id: Any, pk: Any, single_try: bool) -> _Claim | str | None:
    """The delivery claimed for one try; None when it is not due or another worker has it; its
    status when it must wait (a resolution waits until the opening was delivered or gave up)."""
    with workspace_scope([workspace_id]):
        now = timezone.now()
        deliveries = NotificationDelivery.objects.for_workspace(workspace_id)
        delivery = (
            deliveries.select_for_update(skip_locked=True).filter(pk=pk, status__in=ACTIVE)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)).first()
        )
        if delivery is None:
            return None
        if delivery.event == Event.RESOLVED:
            # Order matters to PagerDuty: a resolve that overtakes its trigger leaves the page open.
            opening = deliveries.filter(incident_id=delivery.incident_id, channel_id=delivery.channel_id,
                                        event=Event.OPENED, status__in=ACTIVE).values_list("next_attempt_at",
                                                                                          flat=True)
            if opening.exists():
                wait_until = max([now, *(at for at in opening if at is not None)])
                delivery.next_attempt_at = wait_until + timedelta(seconds=1)
                delivery.save(update_fields=["next_attempt_at"])
                return str(delivery.status)
        channel = NotificationChannel.objects.for_workspace(workspace_id).get(pk=delivery.channel_id)
        claim = _Claim(delivery=delivery, channel=channel, number=delivery.attempts + 1,
                       single_try=single_try or delivery.event == Event.TEST)
        if not channel.is_enabled:
            claim.refusal = f"The channel '{channel.name}' is disabled; nothing was sent."
        elif claim.number > MAX_ATTEMPTS:
            claim.refusal = "No tries left (the last one was interrupted before it finished)."
            claim.number = delivery.attempts
        delivery.attempts = claim.number
        delivery.next_attempt_at = now + timedelta(seconds=CLAIM_SECONDS)
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        return claim


def _send(claim: _Claim) -> _Outcome:
    """Make the call. Runs with no transaction of ours open (the test button excepted)."""
    started = time.monotonic()
    try:
        outcome = _send_email(claim) if claim.channel.kind == Kind.EMAIL else _send_http(claim)
    except Exception as exc:  # a bug must not leave the delivery claimed: record it as an error
        logger.exception("notification %s: unexpected error", claim.delivery.pk)
        outcome = _Outcome(error=f"Unexpected error: {type(exc).__name__}: {exc}")
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    return outcome


def _send_email(claim: _Claim) -> _Outcome:
    addresses = list(claim.channel.config.get("addresses") or [])
    payload = claim.delivery.payload
    request = {"method": "EMAIL", "to": addresses, "subject": payload.get("subject", "")}
    try:
        sent = EmailMessage(subject=payload.get("subject", ""), body=payload.get("text", ""),
                            from_email=settings.DEFAULT_FROM_EMAIL, to=addresses).send()
    except Exception as exc:
        return _Outcome(request=request, error=f"The mail server refused the message: {exc}")
    if not sent:
        return _Outcome(request=request, error="The mail backend sent nothing.")
    return _Outcome(request=request, excerpt=f"Sent to {len(addresses)} address(es).")


def _body(claim: _Claim) -> dict[str, Any]:
    payload = dict(claim.delivery.payload)
    if claim.channel.kind == Kind.PAGERDUTY:
        payload = {"routing_key": claim.channel.config.get("routing_key", ""), **payload}
    return payload


def _logged_url(kind: str, url: str) -> str:
    """The URL as the attempt log shows it: Slack and PagerDuty-style URLs (and any query string)
    can carry secrets, so only their host is kept."""
    if kind == Kind.WEBHOOK:
        base, _, query = url.partition("?")
        return f"{base}?…" if query else base
    return masked_url(url)


def _send_http(claim: _Claim) -> _Outcome:
    channel, delivery = claim.channel, claim.delivery
    url = target_url(channel)
    body = json.dumps(_body(claim), separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    logged = dict(headers)
    if channel.kind == Kind.WEBHOOK:
        timestamp = int(time.time())
        headers.update({
            "Flowdeck-Event": event_type(delivery.event),
            "Flowdeck-Delivery": str(delivery.pk),
            "Flowdeck-Signature": signature_header(channel.secret, timestamp, body),
        })
        logged.update({k: v for k, v in headers.items() if k != "Flowdeck-Signature"})
        logged["Flowdeck-Signature"] = f"t={timestamp},v1=…"
    request: dict[str, Any] = {"method": "POST", "url": _logged_url(channel.kind, url), "headers": logged,
                               "body_bytes": len(body)}
    try:
        address, status_code, excerpt = _http_post(url, body, headers)
    except InvalidInput as exc:  # the A2 check refused the target right before the call
        final = exc.code in ("target_not_allowed", "invalid_url")
        return _Outcome(request=request, error=f"Target refused: {exc.message}", final=final)
    except httpx.TimeoutException as exc:
        return _Outcome(request=request, error=f"Timed out: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return _Outcome(request=request, error=f"Connection failed: {exc or type(exc).__name__}")
    request["address"] = address
    outcome = _Outcome(request=request, status_code=status_code, excerpt=excerpt)
    if not 200 <= status_code < 300:
        outcome.error = f"The receiver answered {status_code}."
        # 3xx is never followed and 4xx (other than 408/429) means the request itself is refused;
        # both are still retried, since a receiver being redeployed answers them too.
    return outcome


def _http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, str]:
    """POST ``body`` to ``url`` after the A2 check, connecting to the address it approved.
    Returns (address, status code, the start of the response)."""
    target = check_target_url(url)
    address = target.addresses[0]
    original = httpx.URL(url.strip())
    pinned = original.copy_with(host=address)
    headers = {**headers, "Host": original.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    timeout = httpx.Timeout(READ_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    with (
        httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream("POST", pinned, content=body, headers=headers, extensions=extensions) as response,
    ):
        received = b""
        for chunk in response.iter_bytes():
            received += chunk
            if len(received) >= MAX_RESPONSE_BYTES:
                break
        return address, response.status_code, received.decode("utf-8", "replace")[:MAX_EXCERPT]


def _record(workspace_id: Any, claim: _Claim, outcome: _Outcome) -> str | None:
    with workspace_scope([workspace_id]):
        now = timezone.now()
        number = claim.number
        if outcome.ok:
            status, next_at = Status.DELIVERED, None
        elif outcome.final or claim.single_try or number >= MAX_ATTEMPTS:
            status, next_at = Status.FAILED, None
        else:
            status, next_at = Status.RETRYING, now + timedelta(seconds=backoff_seconds(number))
        updated = NotificationDelivery.objects.for_workspace(workspace_id).filter(
            pk=claim.delivery.pk, attempts=number, status__in=ACTIVE
        ).update(status=status, next_attempt_at=next_at, last_status_code=outcome.status_code,
                 last_error=outcome.error[:2000], delivered_at=now if status == Status.DELIVERED else None)
        if not updated:  # deleted with its channel meanwhile, or no longer ours
            return None
        DeliveryAttempt.objects.for_workspace(workspace_id).create(
            workspace_id=workspace_id, delivery_id=claim.delivery.pk, number=number, at=now,
            request=outcome.request, status_code=outcome.status_code, response_excerpt=outcome.excerpt[:MAX_EXCERPT],
            error=outcome.error[:2000], duration_ms=outcome.duration_ms,
        )
        if claim.delivery.incident_id is not None and status in (Status.DELIVERED, Status.FAILED):
            _timeline(workspace_id, claim, status, outcome, now)
        return str(status)


def _timeline(workspace_id: Any, claim: _Claim, status: str, outcome: _Outcome, now: datetime) -> None:
    channel, delivery = claim.channel, claim.delivery
    what = f"the {delivery.event} notification"
    if status == Status.DELIVERED:
        kind = IncidentEvent.Kind.NOTIFIED
        message = f"Sent {what} to {channel.name} ({channel.kind})."
    else:
        kind = IncidentEvent.Kind.NOTIFICATION_FAILED
        message = (f"Could not send {what} to {channel.name} ({channel.kind}) after {claim.number} "
                   f"tries: {outcome.error}")
    IncidentEvent.objects.for_workspace(workspace_id).create(
        workspace_id=workspace_id, incident_id=delivery.incident_id, kind=kind, message=message[:2000], at=now,
        details={"delivery_id": str(delivery.pk), "channel_id": str(channel.pk), "channel_name": channel.name,
                 "event": delivery.event, "attempts": claim.number, "status_code": outcome.status_code},
    )
    from orchestration.alerts.incidents import announce_update  # incidents queue deliveries: imported late

    incident = Incident.objects.for_workspace(workspace_id).filter(pk=delivery.incident_id).first()
    if incident is not None:
        announce_update(incident)  # the incident and channels pages show the delivery without a reload


# --- the test button ----------------------------------------------------------------------------


def send_test_notification(actor: Principal, channel: NotificationChannel) -> NotificationDelivery:
    """Send a test message to ``channel`` now (Admin) and return the delivery with its one attempt.
    It is tried once, in the caller's request: the answer is the result, and a failing test is not
    retried in the background."""
    if channel.workspace_id != actor.workspace.pk:
        raise NotFound()
    authorize(actor, "notification_channel:manage", actor.workspace)
    workspace_id = channel.workspace_id
    deliveries = NotificationDelivery.objects.for_workspace(workspace_id)
    delivery_id = uuid.uuid4()
    now = timezone.now()
    deliveries.create(
        id=delivery_id, workspace_id=workspace_id, channel=channel, incident=None, event=Event.TEST,
        payload=build_payload(channel, delivery_id=delivery_id, event=Event.TEST, document=None),
        next_attempt_at=now, created_at=now,
    )
    _try(workspace_id, delivery_id, single_try=True)
    delivery = deliveries.select_related("channel").prefetch_related("attempt_rows").get(pk=delivery_id)
    audit_record(workspace=actor.workspace, action="notification_channel.tested", target=channel, actor=actor,
                 data={"kind": channel.kind, "name": channel.name, "delivery_id": str(delivery_id),
                       "status": delivery.status, "status_code": delivery.last_status_code})
    return delivery
