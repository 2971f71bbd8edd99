"""Sign-up, verification, login, logout and reset on allauth's headless API, and what Flowdeck adds:
a first workspace, sign-up through an invitation, and no account enumeration."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Membership, Role, User, Workspace
from core.tenancy import rls_bypass
from tests.factories import PASSWORD, UserFactory

AUTH = "/_allauth/browser/v1/auth"
GOOD_PASSWORD = "a long and unusual passphrase 42"


def _post(client: Client, path: str, payload: dict):
    return client.post(AUTH + path, payload, content_type="application/json")


def _link_key(pattern: str) -> str:
    match = re.search(pattern, mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return unquote(match.group(1))


def test_signup_creates_owner_workspace_and_requires_verification(db):
    client = Client()
    response = _post(
        client, "/signup", {"email": "Ada@Example.com", "password": GOOD_PASSWORD, "workspace_name": "Analytics"}
    )
    assert response.status_code == 401
    flows = {f["id"]: f for f in response.json()["data"]["flows"]}
    assert flows["verify_email"]["is_pending"] is True
    user = User.objects.get(email="ada@example.com")
    assert user.password.startswith(("argon2", "md5"))
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER and membership.workspace.name == "Analytics"
    assert re.fullmatch(r"[a-z0-9-]+", membership.workspace.slug)
    key = _link_key(r"/account/verify-email/([^\s]+)")
    verified = _post(client, "/email/verify", {"key": key})
    assert verified.status_code == 200, verified.content
    assert client.get(AUTH + "/session").status_code == 200


def test_login_before_verification_is_pending(db):
    _post(Client(), "/signup", {"email": "bob@example.com", "password": GOOD_PASSWORD})
    response = _post(Client(), "/login", {"email": "bob@example.com", "password": GOOD_PASSWORD})
    assert response.status_code == 401
    assert any(f["id"] == "verify_email" and f.get("is_pending") for f in response.json()["data"]["flows"])


def test_weak_password_is_rejected_with_a_message(db):
    response = _post(Client(), "/signup", {"email": "c@example.com", "password": "12345678"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]
    assert not User.objects.filter(email="c@example.com").exists()


def test_signup_with_existing_email_looks_the_same(db):
    UserFactory(email="taken@example.com")
    fresh = _post(Client(), "/signup", {"email": "fresh@example.com", "password": GOOD_PASSWORD})
    taken = _post(Client(), "/signup", {"email": "taken@example.com", "password": GOOD_PASSWORD})
    assert fresh.status_code == taken.status_code == 401
    assert fresh.json()["data"]["flows"] == taken.json()["data"]["flows"]
    assert User.objects.filter(email="taken@example.com").count() == 1


def test_signup_through_invitation_joins_that_workspace_verified(world_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        world_a.client(Role.ADMIN).post(
            world_a.url("invitations/"), {"email": "new@example.com", "role": "developer"}, format="json"
        )
    token = _link_key(r"/invitations/([A-Za-z0-9_\-]+)")
    client = Client()
    response = _post(client, "/signup", {"email": "new@example.com", "password": GOOD_PASSWORD, "invitation": token})
    assert response.status_code == 200, response.content
    assert response.json()["meta"]["is_authenticated"] is True
    user = User.objects.get(email="new@example.com")
    assert list(Membership.objects.filter(user=user).values_list("workspace__slug", "role")) == [("acme", "developer")]


def test_signup_with_someone_elses_invitation_gets_own_workspace(world_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        world_a.client(Role.ADMIN).post(
            world_a.url("invitations/"), {"email": "invited@example.com", "role": "admin"}, format="json"
        )
    token = _link_key(r"/invitations/([A-Za-z0-9_\-]+)")
    response = _post(
        Client(), "/signup", {"email": "other@example.com", "password": GOOD_PASSWORD, "invitation": token}
    )
    assert response.status_code == 401  # still has to verify their own address
    user = User.objects.get(email="other@example.com")
    assert not Membership.objects.filter(user=user, workspace=world_a.workspace).exists()
    assert Membership.objects.get(user=user).role == Role.OWNER


def test_login_logout_and_session_rotation(db):
    UserFactory(email="dee@example.com")
    client = Client()
    client.get("/api/v1/me/")
    before = client.cookies.get("sessionid")
    response = _post(client, "/login", {"email": "dee@example.com", "password": PASSWORD})
    assert response.status_code == 200
    after = client.cookies["sessionid"].value
    assert before is None or before.value != after
    assert client.get("/api/v1/me/").status_code == 200
    assert client.delete(AUTH + "/session").status_code == 401
    assert client.get("/api/v1/me/").status_code in (401, 403)


def test_wrong_password_is_a_clear_400(db):
    UserFactory(email="eve@example.com")
    response = _post(Client(), "/login", {"email": "eve@example.com", "password": "nope nope nope"})
    assert response.status_code == 400
    assert "password" in response.json()["errors"][0]["message"].lower()


def test_password_reset_same_answer_for_unknown_email_and_works_for_known(db):
    user = UserFactory(email="fay@example.com")
    other_session = Client()
    other_session.force_login(user)
    unknown = _post(Client(), "/password/request", {"email": "nobody@example.com"})
    known = _post(Client(), "/password/request", {"email": "fay@example.com"})
    assert unknown.status_code == known.status_code == 200
    key = _link_key(r"/account/password/reset/key/([^\s]+)")
    reset = _post(Client(), "/password/reset", {"key": key, "password": GOOD_PASSWORD})
    assert reset.status_code in (200, 401), reset.content
    user.refresh_from_db()
    assert user.check_password(GOOD_PASSWORD)
    # A password change ends the user's other sessions (B6).
    assert other_session.get("/api/v1/me/").status_code in (401, 403)
    used = _post(Client(), "/password/reset", {"key": key, "password": GOOD_PASSWORD + "x"})
    assert used.status_code == 400


def test_deactivated_user_session_ends(world_a):
    client = world_a.client(Role.DEVELOPER)
    assert client.get(world_a.url("members/")).status_code == 200
    User.objects.filter(pk=world_a.users[Role.DEVELOPER].pk).update(is_active=False)
    assert client.get(world_a.url("members/")).status_code in (401, 403, 404)


def test_removed_member_loses_access_on_next_request(world_a):
    client = world_a.client(Role.DEVELOPER)
    membership = Membership.objects.get(workspace=world_a.workspace, user=world_a.users[Role.DEVELOPER])
    world_a.client(Role.OWNER).delete(world_a.url(f"members/{membership.pk}/"))
    assert client.get(world_a.url("members/")).status_code == 404


def test_signup_is_rate_limited(db, settings, one_rate_window):
    settings.ACCOUNT_RATE_LIMITS = {**settings.ACCOUNT_RATE_LIMITS, "signup": "3/m/ip"}
    statuses = [
        _post(Client(), "/signup", {"email": f"u{i}@example.com", "password": GOOD_PASSWORD}).status_code
        for i in range(5)
    ]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429]


def test_workspace_created_at_signup_is_audited(db):
    _post(Client(), "/signup", {"email": "gil@example.com", "password": GOOD_PASSWORD})
    workspace = Workspace.objects.get(memberships__user__email="gil@example.com")
    from accounts.models import AuditLogEntry

    with rls_bypass():
        entry = AuditLogEntry.objects.for_workspace(workspace).get()
    assert entry.action == "workspace.created" and entry.actor_label == "gil@example.com"


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_wrong_passwords_never_pass_the_limit(settings, one_rate_window):
    import threading

    from django.db import connection

    settings.LOGIN_ATTEMPT_LIMIT_PER_ACCOUNT = 5
    settings.LOGIN_ATTEMPT_WINDOW_SECONDS = 3600  # keep the burst inside one fixed window
    settings.ACCOUNT_RATE_LIMITS = {
        **settings.ACCOUNT_RATE_LIMITS, "login_failed": "1000/m/ip,1000/m/key", "login": "1000/m/ip"
    }
    UserFactory(email="target@example.com")
    checked: list[int] = []
    barrier = threading.Barrier(50)

    def guess(i: int) -> None:
        client = Client(REMOTE_ADDR=f"10.0.{i // 250}.{i % 250}")
        barrier.wait()
        response = _post(client, "/login", {"email": "target@example.com", "password": f"wrong guess {i}"})
        body = response.json()
        code = body.get("errors", [{}])[0].get("code")
        checked.append(0 if code == "too_many_login_attempts" else 1)
        connection.close()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(checked) == 50
    assert sum(checked) <= 5
    # And the right password is refused while the account is limited.
    response = _post(Client(), "/login", {"email": "target@example.com", "password": PASSWORD})
    assert response.status_code in (400, 429)
