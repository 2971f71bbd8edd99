"""SLA alerts with the real periodic machinery: a Celery beat schedules the platform ticks and a
Celery worker runs them and sends the notifications, against the test database; the test process
only writes what a person and an agent would (a policy, a late run, an agent, the run starting) and
watches a webhook receiver. Nothing here calls the evaluator or the delivery code.

The run is late (scheduled five minutes ago, start policy of 60 s) and carries a label no agent
covers: beat's "evaluate SLA policies" tick opens the incident and the worker delivers one signed
``incident.opened``; then an agent covering the label appears and the run starts (through the
engine), and the ticks resolve the incident with exactly one ``incident.resolved``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.authz import Principal
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.alerts.channels import notification_channel_create
from orchestration.alerts.policies import sla_policy_create
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state
from orchestration.models import Agent, FlowRun, Incident, NotificationDelivery, StateType
from orchestration.services.claims import flow_runs_claim
from tests.conftest import WorkspaceWorld, build_world
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory

from .celery_processes import celery_worker_and_beat, wait_for

pytestmark = pytest.mark.postgres

LABEL = "gpu-h100"
EVALUATE_TASK = "orchestration.tasks.evaluate_sla_policies_task"
MAX_SIGNATURE_AGE = 300


class Receiver:
    """A webhook receiver that checks what docs/alerts.md tells a customer's receiver to check: the
    HMAC over ``<t>.<body>`` with the channel's secret and a timestamp within five minutes (else
    401), a signature not seen before (a replay: 409), and a delivery id not handled before (a retry
    of one already handled: 200, recorded in ``duplicates``, not handled again)."""

    def __init__(self) -> None:
        self.secret = ""
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[tuple[int, str]] = []
        self.duplicates: list[str] = []
        self.signatures: set[str] = set()
        self.handled: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code = receiver.check(dict(self.headers), body)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/flowdeck"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def check(self, headers: dict[str, str], body: bytes) -> int:
        fields = dict(part.split("=", 1) for part in headers.get("Flowdeck-Signature", "").split(",") if "=" in part)
        try:
            timestamp = int(fields.get("t", ""))
        except ValueError:
            timestamp = 0
        expected = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        delivery = headers.get("Flowdeck-Delivery", "")
        fresh = abs(time.time() - timestamp) <= MAX_SIGNATURE_AGE
        with self.lock:
            if not hmac.compare_digest(expected, fields.get("v1", "")) or not fresh:
                self.refused.append((401, delivery))
                return 401
            if fields["v1"] in self.signatures:
                self.refused.append((409, delivery))
                return 409
            self.signatures.add(fields["v1"])
            if delivery in self.handled:
                self.duplicates.append(delivery)
                return 200
            self.handled.add(delivery)
            self.accepted.append({"headers": headers, "body": json.loads(body)})
        return 200

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [item["body"] for item in self.accepted if item["body"]["type"] == kind]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def world(transactional_db, settings) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True  # the receiver is on loopback (A2)
    return build_world("acme")


def _principal(world: WorkspaceWorld, role: str) -> Principal:
    if role == Role.AGENT:
        return Principal(workspace=world.workspace, role=Role.AGENT, service_account=world.agent)
    return Principal(workspace=world.workspace, role=role, user=world.users[role])


def _incident(world: WorkspaceWorld) -> Incident | None:
    with rls_bypass():
        return Incident.objects.for_workspace(world.workspace).order_by("opened_at").last()


def test_beat_and_worker_open_notify_and_resolve_a_late_run_incident(world, receiver, tmp_path):
    # given a webhook channel on a local receiver, a start policy (60 s) notifying it, and a run of
    # the flow five minutes late whose label no agent covers
    version = FlowVersionFactory(flow__workspace=world.workspace, flow__project__workspace=world.workspace,
                                 flow__name="train")
    with workspace_scope([world.workspace.pk]):  # as the API's request would (committed at the end)
        channel = notification_channel_create(_principal(world, Role.ADMIN), name="on-call", kind="webhook",
                                              config={"url": receiver.url})
        policy = sla_policy_create(_principal(world, Role.DEVELOPER), name="train starts on time", kind="start",
                                   flow_id=version.flow_id, threshold_seconds=60, channel_ids=[channel.pk])
    receiver.secret = channel.secret
    run = FlowRunFactory(flow_version=version, labels=[LABEL], scheduled_start=timezone.now() - timedelta(minutes=5))

    # when only the real beat and worker run
    with celery_worker_and_beat(tmp_path, {"FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS": "true"}) as celery:
        processes = [celery.worker, celery.beat]
        # then the incident opens and the receiver gets one signed incident.opened
        (opened,) = wait_for(lambda: receiver.of_type("incident.opened"), 30, "the incident.opened webhook", processes)
        incident = _incident(world)
        assert incident is not None and incident.policy_id == policy.pk
        assert opened["incident"]["id"] == str(incident.pk)
        assert opened["incident"]["kind"] == "start"
        assert str(run.pk) in [r["id"] for r in opened["incident"]["runs"]]
        # the alert says why: no live agent covers the run's label
        assert LABEL in opened["incident"]["cause"] and "agent" in opened["incident"]["cause"].lower()

        # when an agent covering the label appears and the run starts (claimed, then RUNNING)
        agent_actor = _principal(world, Role.AGENT)
        with transaction.atomic(), workspace_scope([world.workspace.pk]):
            now = timezone.now()
            agent = Agent.objects.for_workspace(world.workspace).create(
                workspace=world.workspace, name="gpu-agent", labels=[LABEL], service_account=world.agent,
                last_heartbeat_at=now, last_poll_at=now, announced_status="healthy")
            (claimed,) = flow_runs_claim(actor=agent_actor, agent=agent, limit=1, lease_seconds=600)
            assert claimed.pk == run.pk
            result = flow_run_set_state(actor=agent_actor, flow_run_id=run.pk, workspace_id=world.workspace.pk,
                                        state=ProposedState(type=StateType.RUNNING), attempt=claimed.attempt)
            assert result.status is SetStateStatus.ACCEPT

        # then beat and worker resolve the incident: exactly one incident.resolved arrives
        (resolved,) = wait_for(lambda: receiver.of_type("incident.resolved"), 30, "the incident.resolved webhook",
                               processes)
        assert resolved["incident"]["id"] == str(incident.pk)
        incident = _incident(world)
        assert incident.status == Incident.Status.RESOLVED and incident.resolved_by == ""  # by itself
        # ...and two more evaluations later, nothing else was sent or queued
        ticks = celery.task_succeeded(EVALUATE_TASK)
        wait_for(lambda: celery.task_succeeded(EVALUATE_TASK) >= ticks + 2, 20, "two more evaluator ticks", processes)

    assert [item["body"]["type"] for item in receiver.accepted] == ["incident.opened", "incident.resolved"]
    assert [item["headers"]["Flowdeck-Event"] for item in receiver.accepted] == ["incident.opened",
                                                                                 "incident.resolved"]
    assert receiver.refused == [] and receiver.duplicates == []
    with rls_bypass():
        deliveries = list(NotificationDelivery.objects.for_workspace(world.workspace).values_list("event", "status"))
        assert sorted(deliveries) == [("opened", "delivered"), ("resolved", "delivered")]
        assert Incident.objects.for_workspace(world.workspace).count() == 1
        assert FlowRun.objects.for_workspace(world.workspace).get(pk=run.pk).state_type == StateType.RUNNING
        kinds = list(incident.events.values_list("kind", flat=True))
    assert kinds[0] == "opened" and kinds.count("resolved") == 1 and kinds.count("notified") == 2
