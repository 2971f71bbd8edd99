"""The OpenAPI schema behind ``/api/docs/``: Swagger UI can authorize with an API key (the schema
declares the key and the session as security schemes and every operation says which it takes),
every operation documents the errors it can answer in the body the API really sends, descriptions
speak plainly (no internal reliability codes), and generating the schema logs no warnings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS

from accounts.models import Role
from tests.conftest import build_world

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
ERROR_REF = "#/components/schemas/Error"


def _schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    return response.json()


@pytest.fixture
def schema(client: Client) -> dict[str, Any]:
    return _schema(client)


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def test_generating_the_schema_logs_no_warnings(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    GENERATOR_STATS.reset()
    _schema(client)
    problems = sorted({**GENERATOR_STATS._warn_cache, **GENERATOR_STATS._error_cache})
    assert problems == [], "\n".join(problems)
    assert "Warning" not in capsys.readouterr().err


def test_the_key_and_the_session_are_security_schemes(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    # Swagger UI's "Authorize" sends an http/bearer scheme as "Authorization: Bearer <value>".
    assert schemes["ApiKey"]["type"] == "http" and schemes["ApiKey"]["scheme"] == "bearer"
    assert schemes["Session"] == {**schemes["Session"], "type": "apiKey", "in": "cookie", "name": "sessionid"}
    operations = list(_operations(schema))
    assert len(operations) > 50
    for method, path, operation in operations:
        security = operation.get("security")
        assert security, f"{method} {path} lists no security"
        if path == "/api/v1/invitations/{token}/" and method == "GET":
            assert security == [{}], "an invitation's preview needs no sign-in"
        else:
            assert security == [{"ApiKey": []}, {"Session": []}], f"{method} {path}: {security}"


def test_every_operation_documents_its_errors_in_the_error_shape(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert sorted(detail["required"]) == ["code", "details", "message"]
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        expected = {"503"}
        if operation.get("security") != [{}]:
            expected |= {"401", "403", "429"}
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        if method != "GET" and "{workspace_slug}" in path:
            expected.add("409")
        missing = expected - set(responses)
        assert not missing, f"{method} {path} does not document {sorted(missing)}"
        for code, response in responses.items():
            if code.startswith(("4", "5")) and code not in ("409",):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == ERROR_REF, f"{method} {path} {code}: {ref}"
                assert response["description"], f"{method} {path} {code} has no description"


def test_the_documented_error_shape_is_what_the_api_answers(client: Client, schema: dict[str, Any]) -> None:
    documented = set(schema["components"]["schemas"]["ErrorDetail"]["properties"])
    world = build_world("docs")
    owner, viewer = (f"Bearer {world.keys[role]}" for role in (Role.OWNER, Role.VIEWER))
    projects = f"/api/v1/workspaces/{world.workspace.slug}/projects/"
    answers = [
        client.get("/api/v1/me/"),  # 401: no credentials
        client.get("/api/v1/workspaces/nope/flows/", HTTP_AUTHORIZATION=owner),  # 404
        client.post(projects, {"nope": 1}, content_type="application/json", HTTP_AUTHORIZATION=owner),  # 400
        client.post(projects, {"name": "p"}, content_type="application/json", HTTP_AUTHORIZATION=viewer),  # 403
    ]
    assert [a.status_code for a in answers] == [401, 404, 400, 403]
    for answer in answers:
        body = answer.json()
        assert set(body) == {"error"} and set(body["error"]) == documented, body


def test_descriptions_carry_no_internal_codes(schema: dict[str, Any]) -> None:
    code = re.compile(r"\(([A-H]\d{1,2})(, ?[A-H]\d{1,2})*\)|\b[A-H]\d{1,2}:")
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("description", "summary", "title") and isinstance(value, str):
                    texts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert len(texts) > 100
    leaks = sorted({text for text in texts if code.search(text)})
    assert leaks == [], leaks


def test_swagger_ui_keeps_the_key_it_was_given(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    script = client.get("/api/docs/?script=").content.decode()
    assert '"persistAuthorization": true' in script
