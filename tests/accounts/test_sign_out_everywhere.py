"""Signing out everywhere and revoking one's personal API keys (accounts/services/security.py):
every session of the person ends (recorded by allauth or not, this one too), every personal key
they own in any workspace stops working on the next request, other people's keys and the
workspaces' service-account keys stay, each workspace's audit log says so, and open pages close.
Only with the current password, from a browser session, within the login-attempt budget."""

from __future__ import annotations

import logging

import httpx
import pytest
from allauth.usersessions.models import UserSession
from django.contrib.sessions.models import Session
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts.models import ApiKey, AuditLogEntry, Role
from accounts.services.security import sign_out_everywhere
from core.tenancy import rls_bypass
from tests.factories import PASSWORD, MembershipFactory, ServiceAccountFactory, make_key
from tests.live.conftest import (  # noqa: F401 (fixtures)
    acme,
    globex,
    live_servers,
    receive,
    receive_until,
    session_cookie,
)

AUTH = "/_allauth/browser/v1/auth"
URL = "/api/v1/me/sign-out-everywhere/"
MUTATION = """mutation SignOut($password: String!) { signOutEverywhere(password: $password) {
  ok sessionsEnded revokedApiKeys workspaces { workspaceSlug workspaceName count } errors { code message field } } }"""
PREVIEW = "query Keys { personalApiKeys { workspaceSlug workspaceName count } viewer { email } }"


def browser(email: str, password: str = PASSWORD) -> Client:
    """A browser signed in the way the web app signs in (allauth's headless login)."""
    client = Client()
    response = client.post(AUTH + "/login", {"email": email, "password": password}, content_type="application/json")
    assert response.status_code == 200, response.content
    return client


def signed_in(client: Client) -> bool:
    return client.get(AUTH + "/session").status_code == 200


def key_works(key: str, slug: str) -> int:
    return Client().get(f"/api/v1/workspaces/{slug}/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code


def revoked(key: ApiKey) -> bool:
    with rls_bypass():
        key.refresh_from_db()
    return key.revoked_at is not None


def audit_entries(**filters) -> list[AuditLogEntry]:  # type: ignore[no-untyped-def]
    with rls_bypass():
        return list(AuditLogEntry.objects.unscoped().filter(action="account.signed_out_everywhere", **filters))


def gql(client: Client, query: str, variables: dict | None = None) -> dict:
    response = client.post("/graphql", {"query": query, "variables": variables or {}}, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def person(world_a, world_b):  # type: ignore[no-untyped-def]
    """A Developer of acme who is also an Admin of globex, with personal keys in both, plus what
    must survive: a colleague's key, the agent's key, a service-account key the person created."""
    user = world_a.users[Role.DEVELOPER]
    MembershipFactory(workspace=world_b.workspace, user=user, role=Role.ADMIN)
    with rls_bypass():
        acme_key = ApiKey.all_objects.get(workspace=world_a.workspace, user=user)
    second_acme, second_secret = make_key(workspace=world_a.workspace, user=user)
    globex_key, globex_secret = make_key(workspace=world_b.workspace, user=user)
    ci = ServiceAccountFactory(workspace=world_a.workspace, name="ci", role=Role.DEVELOPER)
    ci_key, ci_secret = make_key(workspace=world_a.workspace, service_account=ci)
    with rls_bypass():
        ApiKey.all_objects.filter(pk=ci_key.pk).update(created_by=user)
    return {
        "user": user, "keys": [acme_key, second_acme, globex_key],
        "secrets": {"acme": world_a.keys[Role.DEVELOPER], "acme2": second_secret, "globex": globex_secret},
        "ci": (ci_key, ci_secret),
    }


# --- the service ---------------------------------------------------------------------------------


def test_every_session_ends_every_personal_key_is_revoked_and_nothing_else(world_a, world_b, person,
                                                                             django_capture_on_commit_callbacks,
                                                                             caplog):
    user = person["user"]
    laptop, phone = browser(user.email), browser(user.email)
    colleague = browser(world_a.users[Role.VIEWER].email)
    keys_of_user = [s.session_key for s in UserSession.objects.filter(user=user)]
    assert len(keys_of_user) == 2 and Session.objects.filter(session_key__in=keys_of_user).count() == 2

    with caplog.at_level(logging.INFO, logger="flowdeck.audit"), django_capture_on_commit_callbacks(execute=True):
        result = sign_out_everywhere(user=user, password=PASSWORD, ip_address="203.0.113.9")

    assert result.sessions_ended == 2 and result.revoked_api_keys == 3
    assert {(w.workspace.slug, w.revoked_api_keys) for w in result.workspaces} == {("acme", 2), ("globex", 1)}
    # Sessions: gone from the store and from allauth's list; the colleague's is untouched.
    assert not Session.objects.filter(session_key__in=keys_of_user).exists()
    assert not UserSession.objects.filter(user=user).exists()
    assert not signed_in(laptop) and not signed_in(phone) and signed_in(colleague)
    # Keys: the person's, in both workspaces; not the colleague's, the agent's or the service account's.
    assert all(revoked(k) for k in person["keys"])
    with rls_bypass():
        survivors = ApiKey.all_objects.filter(revoked_at__isnull=True)
        assert person["ci"][0] in survivors
        assert survivors.filter(workspace=world_a.workspace, kind="user").count() == 3  # owner, admin, viewer
        assert survivors.filter(workspace=world_b.workspace, kind="user").count() == 4
        assert survivors.filter(service_account=world_a.agent).exists()
    for secret, slug in ((person["secrets"]["acme"], "acme"), (person["secrets"]["globex"], "globex")):
        assert key_works(secret, slug) == 401
    assert key_works(person["ci"][1], "acme") == 200
    assert key_works(world_a.keys[Role.VIEWER], "acme") == 200
    # One audit entry per workspace of the person, naming the revoked prefixes, and one server log line.
    entries = {e.workspace.slug: e for e in audit_entries(actor_user=user)}
    assert set(entries) == {"acme", "globex"}
    assert entries["acme"].data == {
        "sessions_ended": 2, "revoked_api_keys": 2,
        "prefixes": sorted(k.lookup_prefix for k in person["keys"][:2]),
    }
    assert entries["globex"].data["revoked_api_keys"] == 1 and entries["globex"].ip_address == "203.0.113.9"
    [line] = [r for r in caplog.records if r.name == "flowdeck.audit"]
    assert line.audit["email"] == user.email and line.audit["revoked_api_keys"] == 3


def test_a_session_allauth_never_recorded_is_signed_out_too(world_a, person):
    user = person["user"]
    other_way = Client()
    other_way.force_login(user)  # Django's own login (the operators' admin): no allauth record
    assert not UserSession.objects.filter(user=user).exists()
    assert other_way.get("/api/v1/me/").status_code == 200
    result = sign_out_everywhere(user=user, password=PASSWORD)
    assert result.sessions_ended == 0
    assert other_way.get("/api/v1/me/").status_code == 401
    assert browser(user.email).get("/api/v1/me/").status_code == 200  # the same password still works


def test_a_key_already_revoked_or_expired_is_left_as_it_was(world_a, person):
    from datetime import timedelta

    from django.utils import timezone

    user = person["user"]
    old, _ = make_key(workspace=world_a.workspace, user=user, expires_at=timezone.now() - timedelta(days=1))
    result = sign_out_everywhere(user=user, password=PASSWORD)
    assert result.revoked_api_keys == 3
    assert not revoked(old)


# --- REST ----------------------------------------------------------------------------------------


def test_rest_preview_then_sign_out_everywhere(world_a, world_b, person):
    user = person["user"]
    here, elsewhere = browser(user.email), browser(user.email)
    assert key_works(person["secrets"]["acme"], "acme") == 200  # verified and cached in this process

    preview = here.get(URL)
    assert preview.status_code == 200
    assert preview.json() == {"personal_api_keys": 3, "workspaces": [
        {"slug": "acme", "name": "Acme", "personal_api_keys": 2},
        {"slug": "globex", "name": "Globex", "personal_api_keys": 1},
    ]}

    response = here.post(URL, {"password": PASSWORD}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"sessions_ended": 2, "revoked_api_keys": 3, "workspaces": [
        {"slug": "acme", "name": "Acme", "revoked_api_keys": 2},
        {"slug": "globex", "name": "Globex", "revoked_api_keys": 1},
    ]}
    assert response.cookies["sessionid"].value == ""  # this browser's cookie is cleared
    assert here.get("/api/v1/me/").status_code == 401
    assert elsewhere.get("/api/v1/me/").status_code == 401
    refused = Client().get("/api/v1/workspaces/acme/", HTTP_AUTHORIZATION=f"Bearer {person['secrets']['acme']}")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "api_key_revoked"
    assert key_works(person["ci"][1], "acme") == 200
    assert browser(user.email).get(URL).json() == {"personal_api_keys": 0, "workspaces": []}


def test_a_wrong_password_is_400_and_changes_nothing(world_a, person):
    user = person["user"]
    here, elsewhere = browser(user.email), browser(user.email)
    response = here.post(URL, {"password": PASSWORD + "!"}, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "wrong_password" and "password" in error["details"]
    assert signed_in(here) and signed_in(elsewhere)
    assert not any(revoked(k) for k in person["keys"])
    assert key_works(person["secrets"]["globex"], "globex") == 200
    assert audit_entries() == []
    for body in ({}, {"password": ""}, {"password": 42, "extra": 1}, ["x"]):
        bad = here.post(URL, body, content_type="application/json")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid", (body, bad.content)
    assert signed_in(here)


def test_anonymous_callers_and_api_keys_are_refused(world_a, person):
    anonymous = Client()
    for response in (anonymous.get(URL), anonymous.post(URL, {"password": PASSWORD}, content_type="application/json")):
        assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    with_key = Client(HTTP_AUTHORIZATION=f"Bearer {person['secrets']['acme']}")
    for response in (with_key.get(URL), with_key.post(URL, {"password": PASSWORD}, content_type="application/json")):
        assert response.status_code == 403 and response.json()["error"]["code"] == "session_required"
    assert key_works(person["secrets"]["acme"], "acme") == 200
    assert not any(revoked(k) for k in person["keys"])


def test_a_session_call_needs_its_csrf_token(world_a, person):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(person["user"])
    response = strict.post(URL, {"password": PASSWORD}, content_type="application/json")
    assert response.status_code == 403
    assert not any(revoked(k) for k in person["keys"])


def test_password_guesses_share_the_login_budget(world_a, person, settings, one_rate_window):
    settings.LOGIN_ATTEMPT_LIMIT_PER_ACCOUNT = 3
    here = browser(person["user"].email)  # a successful login gives its ticket back
    for _ in range(3):
        assert here.post(URL, {"password": "guess"}, content_type="application/json").status_code == 400
    limited = here.post(URL, {"password": PASSWORD}, content_type="application/json")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) > 0
    assert signed_in(here) and not any(revoked(k) for k in person["keys"])
    # The login form draws on the same budget for this account.
    login = Client().post(AUTH + "/login", {"email": person["user"].email, "password": PASSWORD},
                          content_type="application/json")
    assert login.status_code == 400


# --- GraphQL -------------------------------------------------------------------------------------


def test_graphql_preview_and_mutation(world_a, world_b, person):
    user = person["user"]
    here, elsewhere = browser(user.email), browser(user.email)
    data = gql(here, PREVIEW)["data"]
    assert data["personalApiKeys"] == [
        {"workspaceSlug": "acme", "workspaceName": "Acme", "count": 2},
        {"workspaceSlug": "globex", "workspaceName": "Globex", "count": 1},
    ]

    wrong = gql(here, MUTATION, {"password": "not it"})["data"]["signOutEverywhere"]
    assert wrong["ok"] is False
    assert [(e["code"], e["field"]) for e in wrong["errors"]] == [("wrong_password", "password")]
    assert signed_in(elsewhere) and not any(revoked(k) for k in person["keys"])

    done = gql(here, MUTATION, {"password": PASSWORD})["data"]["signOutEverywhere"]
    assert done == {"ok": True, "sessionsEnded": 2, "revokedApiKeys": 3, "errors": [], "workspaces": [
        {"workspaceSlug": "acme", "workspaceName": "Acme", "count": 2},
        {"workspaceSlug": "globex", "workspaceName": "Globex", "count": 1},
    ]}
    assert gql(here, PREVIEW)["data"] == {"personalApiKeys": [], "viewer": None}
    assert not signed_in(elsewhere)
    assert key_works(person["secrets"]["acme2"], "acme") == 401
    assert len(audit_entries(actor_user=user)) == 2


def test_graphql_refuses_anonymous_callers(db):
    body = gql(Client(), MUTATION, {"password": PASSWORD})["data"]["signOutEverywhere"]
    assert body["ok"] is False and body["errors"][0]["code"] == "not_authenticated"
    assert gql(Client(), PREVIEW)["data"] == {"personalApiKeys": [], "viewer": None}


# --- across workspaces ---------------------------------------------------------------------------


def test_it_never_touches_anyone_elses_keys_even_in_shared_workspaces(world_a, world_b):
    """The acme Admin (who may revoke any key in acme) signs out everywhere: only their own keys go.
    globex's Owner, also a member of acme, keeps theirs in both workspaces; globex, where the Admin
    is no member, gets no audit entry and shows up in no preview."""
    admin = world_a.users[Role.ADMIN]
    shared = world_b.users[Role.OWNER]
    MembershipFactory(workspace=world_a.workspace, user=shared, role=Role.DEVELOPER)
    shared_acme_key, shared_acme_secret = make_key(workspace=world_a.workspace, user=shared)

    here = browser(admin.email)
    assert here.get(URL).json() == {"personal_api_keys": 1, "workspaces": [
        {"slug": "acme", "name": "Acme", "personal_api_keys": 1}]}
    assert here.post(URL, {"password": PASSWORD}, content_type="application/json").json()["revoked_api_keys"] == 1

    assert key_works(world_a.keys[Role.ADMIN], "acme") == 401
    assert key_works(shared_acme_secret, "acme") == 200 and not revoked(shared_acme_key)
    for role in (Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER):
        assert key_works(world_b.keys[role], "globex") == 200
    assert key_works(world_a.keys[Role.OWNER], "acme") == 200
    assert [e.workspace.slug for e in audit_entries()] == ["acme"]
    # And the acme log shows the entry to acme's Owner only as acme's.
    owner_view = world_a.client(Role.OWNER).get(world_a.url("audit-log/"), {"area": "keys"}).json()["results"]
    assert [r["action"] for r in owner_view][:1] == ["account.signed_out_everywhere"]
    assert world_b.client(Role.OWNER).get(world_b.url("audit-log/"), {"area": "keys"}).json()["results"] == []


# --- open pages, on real servers -----------------------------------------------------------------


def _log_in(http: httpx.Client, email: str) -> str:
    http.get("/_allauth/browser/v1/config")
    response = http.post(AUTH + "/login", json={"email": email, "password": PASSWORD},
                         headers={"X-CSRFToken": http.cookies.get("csrftoken") or ""})
    assert response.status_code == 200, response.text
    return str(http.cookies["sessionid"])


def _closed_code(ws) -> int | None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionClosed) as closed:
        receive_until(ws, lambda m: False, timeout=5)
    return None if closed.value.rcvd is None else closed.value.rcvd.code


@pytest.mark.django_db(transaction=True)
def test_open_pages_close_and_keys_are_refused_by_every_server_process(live_servers, acme, globex):  # noqa: F811
    one, other = live_servers
    user = acme.users[Role.DEVELOPER]
    MembershipFactory(workspace=globex.workspace, user=user, role=Role.VIEWER)
    colleague = acme.users[Role.VIEWER]
    key = acme.keys[Role.DEVELOPER]
    with httpx.Client(base_url=one.url, timeout=15) as laptop, httpx.Client(base_url=other.url, timeout=15) as phone, \
            httpx.Client(base_url=one.url, timeout=15) as colleague_http:
        sessions = [_log_in(laptop, user.email), _log_in(phone, user.email)]
        colleague_session = _log_in(colleague_http, colleague.email)
        # The key is verified and cached by the server process that will be asked again afterwards.
        assert httpx.get(f"{one.url}/api/v1/workspaces/acme/", headers={"Authorization": f"Bearer {key}"}).status_code \
            == 200

        def socket(server, slug, session):  # type: ignore[no-untyped-def]
            return connect(f"{server.ws}/ws/v1/workspaces/{slug}/events/", open_timeout=10,
                           additional_headers={"Origin": server.url, "Cookie": f"sessionid={session}"})

        # A page whose session allauth never recorded: the store keeps it and the socket's periodic
        # re-check finds nothing wrong, so only the message to the person's sockets can close it.
        unrecorded = session_cookie(user)
        with socket(one, "acme", sessions[0]) as acme_page, socket(one, "globex", unrecorded) as globex_page, \
                socket(other, "acme", colleague_session) as colleague_page:
            for ws in (acme_page, globex_page, colleague_page):
                assert receive(ws)["type"] == "hello"
            response = phone.post("/api/v1/me/sign-out-everywhere/", json={"password": PASSWORD},
                                  headers={"X-CSRFToken": phone.cookies.get("csrftoken") or ""})
            assert response.status_code == 200, response.text
            assert _closed_code(acme_page) == 4403
            assert _closed_code(globex_page) == 4403
            colleague_page.send('{"action": "ping"}')
            receive_until(colleague_page, lambda m: m["type"] == "pong")
        refused = httpx.get(f"{one.url}/api/v1/workspaces/acme/", headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "api_key_revoked"
        assert laptop.get("/api/v1/me/").status_code == 401
        assert colleague_http.get("/api/v1/me/").status_code == 200
