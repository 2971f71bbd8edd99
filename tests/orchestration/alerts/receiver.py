"""An independent webhook receiver for the notification tests, plus the small setup they share.

:class:`Receiver` is a real HTTP server on 127.0.0.1 (``http.server`` in a thread). It knows
nothing of Flowdeck's code: given the channel's secret it checks ``Flowdeck-Signature``
(``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``) with :mod:`hmac` and
:mod:`hashlib`, the way a customer's receiver would, and answers

- 401 for a missing or wrong signature,
- 400 for a timestamp more than five minutes away from its clock,
- 409 for a (timestamp, signature) pair it has already accepted (a replay),
- 500 for the first ``fail_first`` requests that pass those checks, when told to,
- ``status`` (200) otherwise.

Without a secret it checks nothing (a Slack- or PagerDuty-compatible endpoint). Every request is
kept in :attr:`Receiver.requests` with its answer.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 300


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    reason: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, *, secret: str | None = None, fail_first: int = 0, status: int = 200,
                 location: str | None = None, hold: threading.Event | None = None):
        self.secret = secret
        self.fail_first = fail_first
        self.status = status
        self.location = location  # answer with this Location header (a redirect)
        self.hold = hold  # when set, each request waits for this event before answering
        self.arrived = threading.Event()
        self.requests: list[Received] = []
        self._seen: set[tuple[str, str]] = set()
        self._failed = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(timeout=30)
                status, reason = receiver.judge(dict(self.headers.items()), body)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body, status, reason))
                self.send_response(status)
                if receiver.location and status < 400:
                    self.send_header("Location", receiver.location)
                payload = json.dumps({"result": reason}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    # --- the receiver's own checks ---------------------------------------------------------------

    def judge(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        if self.secret is not None:
            verdict = self.verify(headers, body)
            if verdict is not None:
                return verdict
        with self._lock:
            if self._failed < self.fail_first:
                self._failed += 1
                return 500, "told to fail"
        return self.status, "accepted"

    def verify(self, headers: dict[str, str], body: bytes) -> tuple[int, str] | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        header = lowered.get("flowdeck-signature", "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        timestamp, signature = parts.get("t", ""), parts.get("v1", "")
        if not timestamp.isdigit() or not signature:
            return 401, "no signature"
        expected = hmac.new(self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return 401, "bad signature"
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            return 400, "too old"
        with self._lock:
            if (timestamp, signature) in self._seen:
                return 409, "replayed"
            self._seen.add((timestamp, signature))
        return None

    # --- sending to it from a test ---------------------------------------------------------------

    def post(self, headers: dict[str, str], body: bytes, path: str = "/hook") -> int:
        """Send a request of the test's own making (a replay, a forgery); returns the status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers)
            return conn.getresponse().status
        finally:
            conn.close()

    def sign(self, timestamp: int, body: bytes) -> str:
        assert self.secret is not None
        return sign(self.secret, timestamp, body)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """A ``Flowdeck-Signature`` value computed the way the documentation tells receivers to."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --- setup shared by the notification tests ------------------------------------------------------


def admin_of(world: Any) -> Any:
    from accounts.authz import principal_for_user
    from accounts.models import Role

    return principal_for_user(world.users[Role.ADMIN], world.workspace)


def make_channel(world: Any, kind: str, config: dict[str, Any], name: str | None = None) -> Any:
    """A channel made the way the app makes them (the service, as the workspace's Admin)."""
    from core.tenancy import workspace_scope
    from orchestration.alerts.channels import notification_channel_create

    with workspace_scope([world.workspace.pk]):
        return notification_channel_create(admin_of(world), name=name or f"{kind} channel", kind=kind, config=config)


def make_incident(world: Any, channels: list[Any], *, runs: int = 2, severity: str = "critical",
                  project: Any = None) -> Any:
    """An open failure incident of a flow with ``runs`` runs, whose policy notifies ``channels``."""
    from core.tenancy import rls_bypass
    from orchestration.models import Incident, IncidentRun, PolicyChannel, SlaPolicy
    from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory

    workspace = world.workspace
    project = project or ProjectFactory(workspace=workspace)
    version = FlowVersionFactory(flow__project=project, flow__workspace=workspace, flow__name=f"nightly-{project.name}")
    flow = version.flow
    with rls_bypass():
        number = SlaPolicy.all_objects.filter(workspace=workspace).count() + 1
        policy = SlaPolicy.all_objects.create(workspace=workspace, name=f"no failures {number}", kind="failure",
                                              flow=flow, severity=severity)
        for channel in channels:
            PolicyChannel.all_objects.create(workspace=workspace, policy=policy, channel=channel)
        incident = Incident.all_objects.create(
            workspace=workspace, policy=policy, policy_name=policy.name, kind="failure", subject_key=f"flow:{flow.pk}",
            flow=flow, severity=severity, title=f"Flow {flow.name} failed", cause="The run ended FAILED after 2 tries.",
        )
    for _ in range(runs):
        run = FlowRunFactory(flow_version=version, state_type="FAILED", state_name="Failed")
        with rls_bypass():
            IncidentRun.all_objects.create(workspace=workspace, incident=incident, flow_run=run)
    return incident


def queue(incident: Any, event: str) -> list[Any]:
    from core.tenancy import workspace_scope
    from orchestration.alerts.delivery import queue_incident_notifications

    with workspace_scope([incident.workspace_id]):
        return queue_incident_notifications(incident, event)


def resolve(incident: Any) -> Any:
    from django.utils import timezone

    from core.tenancy import rls_bypass

    with rls_bypass():
        incident.status = "resolved"
        incident.resolved_at = timezone.now()
        incident.save(update_fields=["status", "resolved_at"])
    return incident


def delivery(delivery_id: Any) -> Any:
    from core.tenancy import rls_bypass
    from orchestration.models import NotificationDelivery

    with rls_bypass():
        return NotificationDelivery.all_objects.prefetch_related("attempt_rows").get(pk=delivery_id)


def timeline(incident: Any) -> list[tuple[str, str]]:
    from core.tenancy import rls_bypass
    from orchestration.models import IncidentEvent

    with rls_bypass():
        return list(IncidentEvent.all_objects.filter(incident=incident).order_by("at", "id")
                    .values_list("kind", "message"))
