"""A browser session's unsafe REST calls need the CSRF token, and a call without it is refused the
way docs/api.md says: 403 with the code `csrf_failed` in the one error shape (not DRF's generic
`permission_denied`). The client signs in as the web app does, through allauth's headless login
with the password, and keeps its cookies; nothing is forced."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role, ServiceAccount
from core.tenancy import rls_bypass
from tests.factories import PASSWORD

AUTH = "/_allauth/browser/v1/auth"


def _signed_in_browser(email: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.get("/_allauth/browser/v1/config").status_code == 200  # sets the csrftoken cookie
    response = client.post(AUTH + "/login", {"email": email, "password": PASSWORD},
                           content_type="application/json", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert response.status_code == 200, response.content
    return client


def _csrf_refusal(response) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 403, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "csrf_failed", body
    assert "X-CSRFToken" in body["error"]["message"]
    return body["error"]


@pytest.mark.django_db
def test_a_signed_in_session_without_the_token_gets_csrf_failed(world_a):
    client = _signed_in_browser(world_a.users[Role.ADMIN].email)
    accounts = world_a.url("service-accounts/")
    assert client.get(accounts).status_code == 200  # reads need no token

    _csrf_refusal(client.post(accounts, {"name": "ci", "role": "agent"}, content_type="application/json"))
    _csrf_refusal(client.patch(world_a.url(), {"name": "Renamed"}, content_type="application/json"))
    _csrf_refusal(client.delete(world_a.url(f"service-accounts/{world_a.agent.pk}/")))
    with rls_bypass():
        accounts_now = ServiceAccount.objects.for_workspace(world_a.workspace)
        assert not accounts_now.filter(name="ci").exists()
        assert accounts_now.filter(pk=world_a.agent.pk).exists()

    # A token that is not the cookie's is refused the same way.
    _csrf_refusal(client.post(accounts, {"name": "ci", "role": "agent"}, content_type="application/json",
                              HTTP_X_CSRFTOKEN="x" * 32))

    # With the cookie's value (rotated by the login) the same call goes through.
    token = client.cookies["csrftoken"].value
    response = client.post(accounts, {"name": "ci", "role": "agent"}, content_type="application/json",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
