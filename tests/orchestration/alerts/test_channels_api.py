"""Notification channels over REST: Admins create, change, rotate, delete and test them; everyone in
the workspace lists them with the target masked; another workspace's ids are 404 and its lists never
show them; bad input is a 400 naming the field and writes nothing; every write is audited without
secrets; the delivery log filters by channel and incident, newest first, cursor-paginated."""

from __future__ import annotations

import json

import pytest

from accounts.models import AuditLogEntry, Role
from core.tenancy import rls_bypass
from orchestration.models import NotificationChannel, NotificationDelivery

from .receiver import Receiver, make_channel, make_incident, queue

pytestmark = pytest.mark.postgres

SLACK_URL = "https://8.8.8.8/services/T0001/B0002/s3cr3tT0ken"  # a public IP literal: no DNS needed


def error(response, status, code=None):
    assert response.status_code == status, response.content[:500]
    body = response.json()["error"]
    assert body["message"]
    if code:
        assert body["code"] == code, body
    return body


def channel_count(world) -> int:
    with rls_bypass():
        return NotificationChannel.objects.for_workspace(world.workspace).count()


def audit(world, prefix="notification_channel.") -> list[AuditLogEntry]:
    with rls_bypass():
        return list(AuditLogEntry.objects.for_workspace(world.workspace).filter(action__startswith=prefix)
                    .order_by("created_at", "id"))


def create(world, payload, role=Role.ADMIN):
    return world.client(role).post(world.url("notification-channels/"), payload, format="json")


# --- create / read / roles ----------------------------------------------------------------------


def test_an_admin_creates_a_webhook_and_gets_its_secret_once_more_on_request(world_a, settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    response = create(world_a, {"name": "ops", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}})
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["secret"]
    assert len(secret) >= 43 and body["config"] == {"url": "http://127.0.0.1:9/hook"}
    assert body["target"] == "http://127.0.0.1:9/…/****" and body["is_enabled"] is True
    detail = world_a.client(Role.ADMIN).get(world_a.url(f"notification-channels/{body['id']}/")).json()
    assert detail["secret"] == secret
    # the audit row says what was made, never the secret
    (entry,) = audit(world_a)
    assert entry.action == "notification_channel.created" and secret not in json.dumps(entry.data)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_viewers_and_developers_see_channels_masked_without_config_or_secret(world_a, role):
    slack = make_channel(world_a, "slack", {"url": SLACK_URL}, name="team slack")
    make_channel(world_a, "email", {"addresses": ["oncall@acme.example.com", "b@acme.example.com"]}, name="mail")
    client = world_a.client(role)
    listed = client.get(world_a.url("notification-channels/"))
    assert listed.status_code == 200
    items = {c["name"]: c for c in listed.json()["results"]}
    assert items["team slack"]["target"] == "https://8.8.8.8/…/****"
    assert items["mail"]["target"] == "o***@acme.example.com (+1 more)"
    assert all(c["config"] is None and c["secret"] is None for c in items.values())
    assert "s3cr3tT0ken" not in listed.content.decode() and "oncall@" not in listed.content.decode()
    detail = client.get(world_a.url(f"notification-channels/{slack.pk}/"))
    assert detail.status_code == 200 and detail.json()["config"] is None


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_only_admins_manage_channels(world_a, role):
    channel = make_channel(world_a, "email", {"addresses": ["oncall@acme.example.com"]})
    client = world_a.client(role)
    error(create(world_a, {"name": "x", "kind": "email", "config": {"addresses": ["a@b.example.com"]}}, role), 403,
          "permission_denied")
    url = world_a.url(f"notification-channels/{channel.pk}/")
    error(client.patch(url, {"name": "renamed"}, format="json"), 403)
    error(client.delete(url), 403)
    error(client.post(url + "test/"), 403)
    assert channel_count(world_a) == 1 and len(audit(world_a)) == 1  # the Admin's creation only


def test_an_owner_manages_channels_too(world_a):
    response = create(world_a, {"name": "mail", "kind": "email", "config": {"addresses": ["a@acme.example.com"]}},
                      Role.OWNER)
    assert response.status_code == 201 and response.json()["config"] == {"addresses": ["a@acme.example.com"]}


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload, field", [
    ({"name": "x", "kind": "webhook", "config": {"url": "not a url"}}, "config"),
    ({"name": "x", "kind": "webhook", "config": {"url": "ftp://8.8.8.8/x"}}, "config"),
    ({"name": "x", "kind": "webhook", "config": {}}, "config"),
    ({"name": "x", "kind": "slack", "config": {"url": "https://user:pw@8.8.8.8/x"}}, "config"),
    ({"name": "x", "kind": "email", "config": {"addresses": ["not-an-email"]}}, "config"),
    ({"name": "x", "kind": "email", "config": {"addresses": []}}, "config"),
    ({"name": "x", "kind": "email", "config": {"addresses": [f"a{i}@b.example.com" for i in range(21)]}}, "config"),
    ({"name": "x", "kind": "email", "config": {"addresses": "a@b.example.com"}}, "config"),
    ({"name": "x", "kind": "email", "config": {"addresses": ["a@b.example.com"], "cc": ["x"]}}, "config"),
    ({"name": "x", "kind": "pagerduty", "config": {"routing_key": ""}}, "config"),
    ({"name": "x", "kind": "pagerduty", "config": {"routing_key": "abc", "url": "http://10.0.0.1/"}}, "config"),
    ({"name": "x", "kind": "sms", "config": {}}, "kind"),
    ({"name": "x", "kind": "email", "config": ["a@b.example.com"]}, "config"),
    ({"name": "", "kind": "email", "config": {"addresses": ["a@b.example.com"]}}, "name"),
    ({"name": "x", "kind": "email", "config": {"addresses": ["a@b.example.com"]}, "secret": "mine"}, "secret"),
    ({"name": "x", "kind": "email", "config": {"addresses": ["a@b.example.com"]}, "workspace": "globex"},
     "workspace"),
    ({"kind": "email", "config": {"addresses": ["a@b.example.com"]}}, "name"),
])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(world_a, settings, payload, field):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = False
    body = error(create(world_a, payload), 400)
    assert field in body["details"], body
    assert channel_count(world_a) == 0 and audit(world_a) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://10.0.0.7/hook", "http://169.254.169.254/x",
                                 "http://localhost/hook"])
def test_a2_private_targets_are_refused_on_save_unless_allowed(world_a, settings, url):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = False
    body = error(create(world_a, {"name": "x", "kind": "webhook", "config": {"url": url}}), 400, "target_not_allowed")
    assert "public addresses" in body["message"] and body["details"]["config"]["url"]
    assert channel_count(world_a) == 0
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    assert create(world_a, {"name": "x", "kind": "webhook", "config": {"url": url}}).status_code == 201


def test_a_duplicate_name_is_a_409(world_a):
    payload = {"name": "mail", "kind": "email", "config": {"addresses": ["a@acme.example.com"]}}
    assert create(world_a, payload).status_code == 201
    error(create(world_a, payload), 409, "name_taken")
    assert channel_count(world_a) == 1


# --- change / rotate / delete -------------------------------------------------------------------


def test_patch_changes_rotates_and_disables_with_audit_rows_free_of_secrets(world_a, settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    channel = make_channel(world_a, "webhook", {"url": "http://127.0.0.1:9/a"})
    url = world_a.url(f"notification-channels/{channel.pk}/")
    admin = world_a.client(Role.ADMIN)

    response = admin.patch(url, {"rotate_secret": True, "name": "renamed", "is_enabled": False}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["secret"] != channel.secret and len(body["secret"]) >= 43
    assert (body["name"], body["is_enabled"]) == ("renamed", False)
    response = admin.patch(url, {"config": {"url": "http://127.0.0.1:9/b"}}, format="json")
    assert response.json()["config"] == {"url": "http://127.0.0.1:9/b"}

    # a bad change is a 400 and changes nothing
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = False
    error(admin.patch(url, {"config": {"url": "http://127.0.0.1:9/c"}}, format="json"), 400, "target_not_allowed")
    error(admin.patch(url, {"kind": "slack"}, format="json"), 400)
    with rls_bypass():
        assert NotificationChannel.objects.for_workspace(world_a.workspace).get().config == {
            "url": "http://127.0.0.1:9/b"}

    assert admin.delete(url).status_code == 204
    assert channel_count(world_a) == 0
    entries = audit(world_a)
    assert [e.action for e in entries] == ["notification_channel.created", "notification_channel.updated",
                                           "notification_channel.updated", "notification_channel.deleted"]
    assert entries[1].data["rotated_secret"] is True
    dumped = json.dumps([e.data for e in entries])
    assert channel.secret not in dumped and body["secret"] not in dumped and "/b" not in dumped


def test_rotating_the_secret_of_a_slack_channel_is_a_400(world_a):
    channel = make_channel(world_a, "slack", {"url": SLACK_URL})
    body = error(world_a.client(Role.ADMIN).patch(world_a.url(f"notification-channels/{channel.pk}/"),
                                                  {"rotate_secret": True}, format="json"), 400)
    assert "rotate_secret" in body["details"]


# --- the test button ----------------------------------------------------------------------------


def test_the_test_button_sends_now_and_answers_the_delivery_with_its_attempt(world_a, settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    with Receiver(secret="x") as receiver:
        channel = make_channel(world_a, "webhook", {"url": receiver.url()})
        receiver.secret = channel.secret
        response = world_a.client(Role.ADMIN).post(world_a.url(f"notification-channels/{channel.pk}/test/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["event"], body["status"], body["attempts"], body["incident_id"]) == ("test", "delivered", 1, None)
    assert body["attempt_rows"][0]["status_code"] == 200
    (request,) = receiver.requests
    assert request.status == 200 and request.headers["Flowdeck-Event"] == "test"
    (entry,) = audit(world_a, "notification_channel.tested")
    assert entry.data["status"] == "delivered" and channel.secret not in json.dumps(entry.data)


def test_a_failing_test_is_reported_and_not_retried(world_a, settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    with Receiver(fail_first=5) as receiver:
        channel = make_channel(world_a, "slack", {"url": receiver.url("/services/x")})
        body = world_a.client(Role.ADMIN).post(world_a.url(f"notification-channels/{channel.pk}/test/")).json()
    assert (body["status"], body["last_status_code"], body["next_attempt_at"]) == ("failed", 500, None)
    assert "500" in body["last_error"]


# --- the delivery log ---------------------------------------------------------------------------


def test_the_delivery_log_filters_by_channel_and_incident_newest_first_with_cursor_pages(world_a):
    one = make_channel(world_a, "email", {"addresses": ["a@acme.example.com"]}, name="one")
    two = make_channel(world_a, "email", {"addresses": ["b@acme.example.com"]}, name="two")
    first = make_incident(world_a, [one, two])
    second = make_incident(world_a, [one])
    queue(first, "opened")
    queue(second, "opened")
    client = world_a.client(Role.VIEWER)

    everything = client.get(world_a.url("notification-deliveries/")).json()["results"]
    assert len(everything) == 3
    assert [d["created_at"] for d in everything] == sorted((d["created_at"] for d in everything), reverse=True)
    by_channel = client.get(world_a.url(f"notification-deliveries/?channel={one.pk}")).json()["results"]
    assert {d["incident_id"] for d in by_channel} == {str(first.pk), str(second.pk)}
    by_incident = client.get(world_a.url(f"notification-deliveries/?incident={first.pk}")).json()["results"]
    assert {d["channel_name"] for d in by_incident} == {"one", "two"}
    assert all(d["incident_title"] == first.title and d["attempt_rows"] == [] for d in by_incident)
    page = client.get(world_a.url("notification-deliveries/?limit=2")).json()
    assert len(page["results"]) == 2 and page["next"]
    rest = client.get(page["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    error(client.get(world_a.url("notification-deliveries/?channel=not-a-uuid")), 400)


def test_the_delivery_log_shows_attempts(world_a, settings):
    from orchestration.alerts.delivery import send_delivery

    channel = make_channel(world_a, "email", {"addresses": ["a@acme.example.com"]})
    (queued,) = queue(make_incident(world_a, [channel]), "opened")
    send_delivery(queued.pk)
    (item,) = world_a.client(Role.VIEWER).get(world_a.url("notification-deliveries/")).json()["results"]
    assert item["status"] == "delivered"
    assert item["attempt_rows"][0]["number"] == 1 and item["attempt_rows"][0]["request"]["method"] == "EMAIL"


def test_deliveries_about_a_restricted_project_are_hidden_from_those_it_is_not_shared_with(world_a):
    from tests.orchestration.factories import ProjectFactory

    channel = make_channel(world_a, "email", {"addresses": ["a@acme.example.com"]})
    secret_project = ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    queue(make_incident(world_a, [channel], project=secret_project), "opened")
    queue(make_incident(world_a, [channel]), "opened")
    assert len(world_a.client(Role.VIEWER).get(world_a.url("notification-deliveries/")).json()["results"]) == 1
    assert len(world_a.client(Role.ADMIN).get(world_a.url("notification-deliveries/")).json()["results"]) == 2


# --- isolation ----------------------------------------------------------------------------------


def test_another_workspaces_channels_and_deliveries_are_404_and_never_listed(world_a, world_b, settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    channel = make_channel(world_a, "webhook", {"url": "http://127.0.0.1:9/hook"})
    incident = make_incident(world_a, [channel])
    queue(incident, "opened")
    make_channel(world_b, "email", {"addresses": ["b@globex.example.com"]}, name="b mail")
    client = world_b.client(Role.OWNER)

    # A's ids under B's slug: 404 for every method
    url = world_b.url(f"notification-channels/{channel.pk}/")
    for response in (client.get(url), client.patch(url, {"name": "x"}, format="json"), client.delete(url),
                     client.post(url + "test/")):
        error(response, 404, "not_found")
    # A's slug from B's member: 404
    error(client.get(world_a.url("notification-channels/")), 404)
    # B's lists show only B's
    names = [c["name"] for c in client.get(world_b.url("notification-channels/")).json()["results"]]
    assert names == ["b mail"]
    assert client.get(world_b.url("notification-deliveries/")).json()["results"] == []
    assert client.get(world_b.url(f"notification-deliveries/?channel={channel.pk}")).json()["results"] == []
    assert client.get(world_b.url(f"notification-deliveries/?incident={incident.pk}")).json()["results"] == []
    with rls_bypass():
        assert NotificationChannel.objects.for_workspace(world_a.workspace).get().name == channel.name
        assert NotificationDelivery.objects.for_workspace(world_a.workspace).count() == 1
