"""Links in e-mails point to the address people reach the server on: FLOWDECK_PUBLIC_URL when it is
set, otherwise the address of the request that sent the mail (accounts/links.py), and mails name
the product, not the host."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Role
from tests.factories import UserFactory

AUTH = "/_allauth/browser/v1/auth"
GOOD_PASSWORD = "a long and unusual passphrase 42"
HOST = "127.0.0.1:8103"
PUBLIC = "https://flowdeck.example.com"
LINK = re.compile(r"https?://[^\s<>\"']+")

INVITE = """
mutation($workspace: String!, $email: String!, $role: String!) {
  inviteMember(workspace: $workspace, email: $email, role: $role) { errors { message } }
}
"""


def _links(message: mail.EmailMessage) -> list[str]:
    return LINK.findall(message.body)


def _client_on(host: str, user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client


def _invite_rest(world, capture, host: str = HOST) -> mail.EmailMessage:  # type: ignore[no-untyped-def]
    client = _client_on(host, world.users[Role.ADMIN])
    with capture(execute=True):
        response = client.post(
            world.url("invitations/"), {"email": "new@example.com", "role": "developer"},
            content_type="application/json",
        )
    assert response.status_code == 201, response.content
    return mail.outbox[-1]


def _sign_up(host: str = HOST) -> mail.EmailMessage:
    response = _client_on(host).post(
        AUTH + "/signup", {"email": "ada@example.com", "password": GOOD_PASSWORD}, content_type="application/json"
    )
    assert response.status_code == 401, response.content  # pending verification
    return mail.outbox[-1]


@pytest.fixture
def no_public_url(settings):  # type: ignore[no-untyped-def]
    settings.PUBLIC_URL = ""


@pytest.fixture
def public_url(settings):  # type: ignore[no-untyped-def]
    settings.PUBLIC_URL = PUBLIC


def test_invitation_link_uses_the_requests_address_when_public_url_is_unset(
    world_a, django_capture_on_commit_callbacks, no_public_url
):
    message = _invite_rest(world_a, django_capture_on_commit_callbacks)
    [link] = _links(message)
    assert link.startswith(f"http://{HOST}/invitations/")


def test_invitation_link_through_graphql_and_resend_use_the_requests_address(
    world_a, django_capture_on_commit_callbacks, no_public_url
):
    client = _client_on("localhost:9123", world_a.users[Role.ADMIN])
    with django_capture_on_commit_callbacks(execute=True):
        body = client.post(
            "/graphql",
            {"query": INVITE, "variables": {"workspace": "acme", "email": "gql@example.com", "role": "viewer"}},
            content_type="application/json",
        ).json()
    assert body["data"]["inviteMember"]["errors"] == [], body
    assert _links(mail.outbox[-1])[0].startswith("http://localhost:9123/invitations/")

    invitation_id = world_a.client(Role.ADMIN).get(world_a.url("invitations/")).json()["results"][0]["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = _client_on("localhost:9124", world_a.users[Role.ADMIN]).post(
            world_a.url(f"invitations/{invitation_id}/resend/")
        )
    assert response.status_code == 200, response.content
    assert _links(mail.outbox[-1])[0].startswith("http://localhost:9124/invitations/")


def test_invitation_link_uses_public_url_when_set(world_a, django_capture_on_commit_callbacks, public_url):
    message = _invite_rest(world_a, django_capture_on_commit_callbacks)
    [link] = _links(message)
    assert link.startswith(f"{PUBLIC}/invitations/")


def test_sign_up_mail_names_flowdeck_and_links_to_the_requests_address(db, no_public_url):
    message = _sign_up()
    assert "Flowdeck" in message.body
    assert "Hello from 127.0.0.1" not in message.body and "example.com!" not in message.body
    assert message.subject.startswith("[Flowdeck] ")
    links = _links(message)
    assert links and all(link.startswith(f"http://{HOST}/") for link in links), links
    assert any("/account/verify-email/" in link for link in links)


def test_sign_up_and_reset_mails_link_to_public_url_when_set(db, public_url):
    message = _sign_up()
    assert "Hello from Flowdeck!" in message.body
    links = _links(message)
    assert links and all(link.startswith(f"{PUBLIC}/") for link in links), links

    UserFactory(email="fay@example.com")
    response = _client_on(HOST).post(
        AUTH + "/password/request", {"email": "fay@example.com"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    links = _links(mail.outbox[-1])
    assert any(link.startswith(f"{PUBLIC}/account/password/reset/key/") for link in links), links
    assert all(link.startswith(f"{PUBLIC}/") for link in links), links
