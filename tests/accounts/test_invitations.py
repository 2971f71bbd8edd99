"""B4: invitations are single-use, hashed, bound to workspace + email + role, and expire in 7 days."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.db import close_old_connections, connection
from django.utils import timezone

from accounts.authz import principal_for_user
from accounts.models import Invitation, Membership, Role
from accounts.services import invitations
from core.errors import Gone
from core.tenancy import rls_bypass, workspace_scope
from tests.factories import UserFactory


def _token_from_mail() -> str:
    match = re.search(r"/invitations/([A-Za-z0-9_\-]+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def _invite(world, capture, email="new@example.com", role="developer", as_role=Role.ADMIN):
    with capture(execute=True):
        response = world.client(as_role).post(world.url("invitations/"), {"email": email, "role": role}, format="json")
    assert response.status_code == 201, response.content
    return response.json(), _token_from_mail()


def test_invite_sends_link_and_stores_only_a_hash(world_a, django_capture_on_commit_callbacks):
    body, token = _invite(world_a, django_capture_on_commit_callbacks)
    assert len(token) >= 43  # 32 random bytes, base64url
    with rls_bypass():
        invitation = Invitation.objects.for_workspace(world_a.workspace).get(pk=body["id"])
    assert token not in invitation.token_hash
    assert body["status"] == "pending" and body["role"] == "developer"
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
    assert mail.outbox[-1].to == ["new@example.com"]


def test_existing_user_accepts_and_joins_with_the_role(world_a, django_capture_on_commit_callbacks):
    user = UserFactory(email="new@example.com")
    _, token = _invite(world_a, django_capture_on_commit_callbacks, role="viewer")
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(user)
    preview = client.get(f"/api/v1/invitations/{token}/").json()
    assert preview["workspace_slug"] == "acme" and preview["role"] == "viewer" and preview["status"] == "pending"
    response = client.post(f"/api/v1/invitations/{token}/accept/")
    assert response.status_code == 200 and response.json()["slug"] == "acme"
    assert Membership.objects.get(workspace=world_a.workspace, user=user).role == "viewer"
    again = client.post(f"/api/v1/invitations/{token}/accept/")
    assert again.status_code == 410 and again.json()["error"]["code"] == "invitation_used"


def test_accept_by_another_email_is_refused(world_a, django_capture_on_commit_callbacks):
    _, token = _invite(world_a, django_capture_on_commit_callbacks)
    intruder = world_a.client(Role.VIEWER)
    response = intruder.post(f"/api/v1/invitations/{token}/accept/")
    assert response.status_code == 403 and response.json()["error"]["code"] == "invitation_email_mismatch"


def test_expired_invitation_is_410(world_a, django_capture_on_commit_callbacks):
    user = UserFactory(email="late@example.com")
    _, token = _invite(world_a, django_capture_on_commit_callbacks, email="late@example.com")
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(user)
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        response = client.post(f"/api/v1/invitations/{token}/accept/")
    assert response.status_code == 410 and response.json()["error"]["code"] == "invitation_expired"


def test_revoked_invitation_is_410_and_resend_invalidates_old_link(world_a, django_capture_on_commit_callbacks):
    user = UserFactory(email="new@example.com")
    admin = world_a.client(Role.ADMIN)
    body, old_token = _invite(world_a, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        resent = admin.post(world_a.url(f"invitations/{body['id']}/resend/"))
    assert resent.status_code == 200 and resent.json()["send_count"] == 2
    new_token = _token_from_mail()
    assert new_token != old_token
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(user)
    assert client.post(f"/api/v1/invitations/{old_token}/accept/").status_code == 404
    assert admin.post(world_a.url(f"invitations/{body['id']}/revoke/")).status_code == 200
    response = client.post(f"/api/v1/invitations/{new_token}/accept/")
    assert response.status_code == 410 and response.json()["error"]["code"] == "invitation_revoked"


def test_role_cannot_exceed_inviters(world_a):
    response = world_a.client(Role.ADMIN).post(
        world_a.url("invitations/"), {"email": "x@example.com", "role": "owner"}, format="json"
    )
    assert response.status_code == 403
    response = world_a.client(Role.DEVELOPER).post(
        world_a.url("invitations/"), {"email": "x@example.com", "role": "viewer"}, format="json"
    )
    assert response.status_code == 403


def test_duplicate_invite_and_member_invite_are_409(world_a, django_capture_on_commit_callbacks):
    _invite(world_a, django_capture_on_commit_callbacks)
    admin = world_a.client(Role.ADMIN)
    again = admin.post(world_a.url("invitations/"), {"email": "NEW@example.com", "role": "viewer"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_invited"
    member = admin.post(
        world_a.url("invitations/"), {"email": world_a.users[Role.VIEWER].email, "role": "viewer"}, format="json"
    )
    assert member.status_code == 409 and member.json()["error"]["code"] == "already_member"


def test_bad_invite_input_is_400(world_a):
    admin = world_a.client(Role.ADMIN)
    for payload in ({"email": "not-an-email", "role": "viewer"}, {"email": "a@b.co", "role": "emperor"},
                    {"email": "a@b.co", "role": "agent"}, {"email": "a@b.co"},
                    {"email": "a@b.co", "role": "viewer", "workspace": "x"}):
        response = admin.post(world_a.url("invitations/"), payload, format="json")
        assert response.status_code == 400, payload
        assert response.json()["error"]["message"]


def test_unknown_token_is_404(api, db):
    assert api.get("/api/v1/invitations/nonsense/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_accepts_exactly_one_succeeds():
    from tests.conftest import build_world

    world = build_world("race")
    user = UserFactory(email="racer@example.com")
    owner = principal_for_user(world.users[Role.OWNER], world.workspace)
    from django.db import transaction

    with transaction.atomic(), workspace_scope([world.workspace.pk]):
        _, token = invitations.invitation_create(actor=owner, email="racer@example.com", role="developer")
    results: list[str] = []
    barrier = threading.Barrier(2)

    def accept():
        close_old_connections()
        barrier.wait()
        try:
            with transaction.atomic():
                invitations.invitation_accept(token=token, user=user)
            results.append("ok")
        except Gone as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["invitation_used", "ok"]
    assert Membership.objects.filter(workspace=world.workspace, user=user).count() == 1
