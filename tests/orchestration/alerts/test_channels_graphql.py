"""Notification channels over GraphQL: the same reads and rules as REST (masked for non-Admins,
another workspace's ids null), the mutations with errors in the payload and nothing written."""

from __future__ import annotations

import json

import pytest

from accounts.models import Role
from core.tenancy import rls_bypass
from orchestration.alerts.delivery import send_delivery
from orchestration.models import NotificationChannel
from tests.accounts.test_graphql import gql, login, ok

from .receiver import Receiver, make_channel, make_incident, queue

pytestmark = pytest.mark.postgres

SLACK_URL = "https://8.8.8.8/services/T0001/B0002/s3cr3tT0ken"
CHANNEL = "id name kind target isEnabled createdAt lastDeliveryStatus config secret"
ERRORS = "errors { code message field }"

CHANNELS = f"""query($ws: String!) {{ orchestration(workspace: $ws) {{ alerts {{ channels {{ {CHANNEL} }} }} }} }}"""
ONE = f"""query($ws: String!, $id: ID!) {{ orchestration(workspace: $ws) {{ alerts {{
  channel(id: $id) {{ {CHANNEL} }} }} }} }}"""
DELIVERIES = """query($ws: String!, $channel: ID, $incident: ID, $first: Int) { orchestration(workspace: $ws) {
  alerts { deliveries(channelId: $channel, incidentId: $incident, first: $first) {
    id channelId channelName incidentId incidentTitle event status attempts lastStatusCode lastError createdAt
    deliveredAt attemptRows { number at statusCode error durationMs request } } } } }"""
CREATE = f"""mutation($ws: String!, $name: String!, $kind: String!, $config: JSONString!) {{
  createNotificationChannel(workspace: $ws, name: $name, kind: $kind, config: $config) {{
    channel {{ {CHANNEL} }} {ERRORS} }} }}"""
UPDATE = f"""mutation($ws: String!, $id: ID!, $name: String, $config: JSONString, $rotate: Boolean) {{
  updateNotificationChannel(workspace: $ws, id: $id, name: $name, config: $config, rotateSecret: $rotate) {{
    channel {{ {CHANNEL} }} {ERRORS} }} }}"""
DELETE = f"""mutation($ws: String!, $id: ID!) {{
  deleteNotificationChannel(workspace: $ws, id: $id) {{ ok {ERRORS} }} }}"""
TEST = f"""mutation($ws: String!, $id: ID!) {{ sendTestNotification(workspace: $ws, id: $id) {{
  delivery {{ id event status attempts attemptRows {{ statusCode }} }} {ERRORS} }} }}"""


def channels(world, role):
    return ok(gql(login(world.users[role]), CHANNELS, {"ws": world.workspace.slug}))["orchestration"]["alerts"][
        "channels"]


def count(world) -> int:
    with rls_bypass():
        return NotificationChannel.objects.for_workspace(world.workspace).count()


def test_viewers_see_masked_channels_and_admins_their_config(world_a):
    make_channel(world_a, "slack", {"url": SLACK_URL}, name="team slack")
    (seen,) = channels(world_a, Role.VIEWER)
    assert seen["target"] == "https://8.8.8.8/…/****" and seen["config"] is None and seen["secret"] is None
    (admin_seen,) = channels(world_a, Role.ADMIN)
    assert admin_seen["config"] == {"url": SLACK_URL}


def test_an_admin_creates_a_webhook_and_gets_its_secret(world_a, settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    data = ok(gql(login(world_a.users[Role.ADMIN]), CREATE, {
        "ws": "acme", "name": "ops", "kind": "webhook", "config": json.dumps({"url": "http://127.0.0.1:9/hook"})}))
    payload = data["createNotificationChannel"]
    assert payload["errors"] == [] and len(payload["channel"]["secret"]) >= 43
    rotated = ok(gql(login(world_a.users[Role.ADMIN]), UPDATE, {"ws": "acme", "id": payload["channel"]["id"],
                                                                "rotate": True}))["updateNotificationChannel"]
    assert rotated["errors"] == [] and rotated["channel"]["secret"] != payload["channel"]["secret"]


def test_a_developer_cannot_create_update_delete_or_test(world_a):
    channel = make_channel(world_a, "email", {"addresses": ["a@acme.example.com"]})
    client = login(world_a.users[Role.DEVELOPER])
    created = ok(gql(client, CREATE, {"ws": "acme", "name": "x", "kind": "email",
                                      "config": json.dumps({"addresses": ["b@acme.example.com"]})}))
    assert created["createNotificationChannel"]["errors"][0]["code"] == "permission_denied"
    for mutation, name in ((UPDATE, "updateNotificationChannel"), (DELETE, "deleteNotificationChannel"),
                           (TEST, "sendTestNotification")):
        data = ok(gql(client, mutation, {"ws": "acme", "id": str(channel.pk)}))
        assert data[name]["errors"][0]["code"] == "permission_denied", name
    assert count(world_a) == 1


@pytest.mark.parametrize("kind, config, field", [
    ("webhook", {"url": "http://127.0.0.1/x"}, "config"),
    ("email", {"addresses": ["nope"]}, "config"),
    ("sms", {}, "kind"),
    ("email", ["a@b.example.com"], "config"),
])
def test_bad_input_is_an_error_in_the_payload_and_writes_nothing(world_a, settings, kind, config, field):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = False
    data = ok(gql(login(world_a.users[Role.ADMIN]), CREATE, {"ws": "acme", "name": "x", "kind": kind,
                                                              "config": json.dumps(config)}))
    (error,) = data["createNotificationChannel"]["errors"]
    assert error["field"] == field and error["message"]
    assert count(world_a) == 0


def test_send_test_notification_and_the_delivery_log(world_a, settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    with Receiver() as receiver:
        channel = make_channel(world_a, "slack", {"url": receiver.url("/services/x")})
        data = ok(gql(login(world_a.users[Role.ADMIN]), TEST, {"ws": "acme", "id": str(channel.pk)}))
    tested = data["sendTestNotification"]
    assert tested["errors"] == [] and tested["delivery"]["status"] == "delivered"
    assert tested["delivery"]["attemptRows"] == [{"statusCode": 200}]
    assert len(receiver.requests) == 1

    mailbox = make_channel(world_a, "email", {"addresses": ["a@acme.example.com"]}, name="mail")
    incident = make_incident(world_a, [mailbox])
    (queued,) = queue(incident, "opened")
    send_delivery(queued.pk)
    log = ok(gql(login(world_a.users[Role.VIEWER]), DELIVERIES, {"ws": "acme", "incident": str(incident.pk)}))
    (item,) = log["orchestration"]["alerts"]["deliveries"]
    assert (item["channelName"], item["incidentTitle"], item["event"], item["status"]) == (
        "mail", incident.title, "opened", "delivered")
    assert item["attemptRows"][0]["request"]["method"] == "EMAIL"
    everything = ok(gql(login(world_a.users[Role.VIEWER]), DELIVERIES, {"ws": "acme", "first": 1}))
    assert len(everything["orchestration"]["alerts"]["deliveries"]) == 1
    statuses = {c["name"]: c["lastDeliveryStatus"] for c in channels(world_a, Role.VIEWER)}
    assert statuses == {"slack channel": "delivered", "mail": "delivered"}


def test_another_workspaces_channel_is_null_and_never_listed(world_a, world_b):
    channel = make_channel(world_a, "email", {"addresses": ["a@acme.example.com"]})
    (queued,) = queue(make_incident(world_a, [channel]), "opened")
    client = login(world_b.users[Role.OWNER])
    one = ok(gql(client, ONE, {"ws": "globex", "id": str(channel.pk)}))
    assert one["orchestration"]["alerts"]["channel"] is None
    assert channels(world_b, Role.OWNER) == []
    log = ok(gql(client, DELIVERIES, {"ws": "globex", "channel": str(channel.pk)}))
    assert log["orchestration"]["alerts"]["deliveries"] == []
    for mutation, name in ((DELETE, "deleteNotificationChannel"), (TEST, "sendTestNotification")):
        data = ok(gql(client, mutation, {"ws": "globex", "id": str(channel.pk)}))
        assert data[name]["errors"][0]["code"] == "not_found"
    assert count(world_a) == 1
    malformed = ok(gql(client, ONE, {"ws": "globex", "id": "not-a-uuid"}))
    assert malformed["orchestration"]["alerts"]["channel"] is None
