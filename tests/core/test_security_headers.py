"""Security headers (core/security_headers.py): a Content-Security-Policy without inline scripts and
a Permissions-Policy on HTML pages, ``Cache-Control: no-store`` on every answer that carries a key's
secret. (HSTS in production is Django's, from config/settings.py; tests/core/test_security_checks.py
holds production to it.)"""

from __future__ import annotations

import re

import pytest
from django.http import HttpResponse
from django.test import Client

from accounts.models import Role
from tests.accounts.test_graphql import login, ok

pytestmark = pytest.mark.django_db


def directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def inline_scripts(html: str) -> list[str]:
    """Every <script> tag without a src attribute."""
    return [tag for tag in re.findall(r"<script\b[^>]*>", html, flags=re.IGNORECASE) if " src=" not in tag]


def test_the_web_app_page_forbids_inline_scripts_and_framing(client: Client) -> None:
    page = client.get("/runs")
    assert page.status_code == 200
    policy = directives(page["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", "ws://testserver"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert "camera=()" in page["Permissions-Policy"] and "geolocation=()" in page["Permissions-Policy"]
    # The shell itself obeys the policy: its scripts are files.
    html = page.content.decode()
    assert "<script" in html and inline_scripts(html) == []


def test_over_https_the_socket_is_wss(client: Client) -> None:
    page = client.get("/", secure=True)
    assert directives(page["Content-Security-Policy"])["connect-src"] == ["'self'", "wss://testserver"]


def test_the_api_docs_page_runs_no_inline_script(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert inline_scripts(html) == []
    policy = directives(page["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    # The template's one <style> block is allowed by its hash, nothing else inline.
    assert "unsafe-inline" not in page["Content-Security-Policy"]
    assert policy["style-src"][0] == "'self'" and len(policy["style-src"]) == 2
    assert policy["style-src"][1].startswith("'sha256-")
    # Swagger UI's start-up script is a file of this origin.
    started = re.search(r'<script src="([^"]*script=[^"]*)"', html)
    assert started is not None
    script = client.get(started.group(1).replace("&amp;", "&"))
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_json_answers_carry_no_page_policy(world_a) -> None:
    response = world_a.client(Role.VIEWER).get(world_a.url("members/"))
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response and "Permissions-Policy" not in response
    assert response.get("Cache-Control") != "no-store"


def test_every_rest_answer_with_a_new_secret_is_no_store(world_a) -> None:
    owner = world_a.client(Role.OWNER)
    created = owner.post(world_a.url("api-keys/"), {"name": "ci"}, format="json")
    assert created.status_code == 201 and created.json()["secret"]
    assert created["Cache-Control"] == "no-store"

    account_key = owner.post(world_a.url(f"service-accounts/{world_a.agent.pk}/keys/"), {"name": "a"}, format="json")
    assert account_key.status_code == 201 and account_key.json()["secret"]
    assert account_key["Cache-Control"] == "no-store"

    rotated = owner.post(world_a.url(f"api-keys/{created.json()['id']}/rotate/"), {}, format="json")
    assert rotated.status_code == 201 and rotated["Cache-Control"] == "no-store"

    # A refused write is not kept either.
    refused = owner.post(world_a.url("api-keys/"), {"name": ""}, format="json")
    assert refused.status_code == 400 and refused["Cache-Control"] == "no-store"


def test_graphql_mutations_that_return_a_secret_are_no_store(world_a) -> None:
    client = login(world_a.users[Role.OWNER])

    def post(query: str, variables: dict[str, str]) -> HttpResponse:
        return client.post("/graphql", {"query": query, "variables": variables}, content_type="application/json")

    personal = post("mutation($w: String!) { createApiKey(workspace: $w, name: \"web\") { secret } }",
                    {"w": world_a.workspace.slug})
    assert ok(personal.json())["createApiKey"]["secret"]
    assert personal["Cache-Control"] == "no-store"
    # The connect-an-agent page mints the agent's key with this one.
    agent = post("mutation($w: String!, $id: ID!) { createServiceAccountKey(workspace: $w, serviceAccountId: $id, "
                 "name: \"agent\") { secret } }", {"w": world_a.workspace.slug, "id": str(world_a.agent.pk)})
    assert ok(agent.json())["createServiceAccountKey"]["secret"]
    assert agent["Cache-Control"] == "no-store"
