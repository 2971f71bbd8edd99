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
        expected = {"400", "503"}  # 400: unstorable text is refused on every route
        if operation.get("security") != [{}]:
            expected |= {"401", "403", "429"}
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"413", "415"}
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


def _body_schema(schema: dict[str, Any], operation: dict[str, Any], code: str = "200") -> dict[str, Any]:
    found = operation["responses"][code]["content"]["application/json"]["schema"]
    if "$ref" in found:
        return schema["components"]["schemas"][found["$ref"].rsplit("/", 1)[-1]]
    return found


def test_lists_document_the_envelope_they_answer(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    ws = "/api/v1/workspaces/{workspace_slug}/"
    for route in ("members/", "api-keys/", "audit-log/", "projects/", "flows/", "flow-runs/", "agents/",
                  "incidents/", "notification-channels/", "flows/{flow_id}/versions/"):
        operation = paths[ws + route]["get"]
        page = _body_schema(schema, operation)
        assert page["type"] == "object" and {"next", "previous", "results"} <= set(page["properties"]), route
        assert {"cursor", "limit"} <= {p["name"] for p in operation["parameters"]}, route
        assert operation["operationId"].endswith("_list"), route
    for route, extra in (("sla-policies/", set()), ("concurrency-limits/", set()),
                         ("flow-runs/{flow_run_id}/states/", {"next_after"}),
                         ("flow-runs/{flow_run_id}/logs/", {"next_after_sequence"})):
        operation = paths[ws + route]["get"]
        envelope = _body_schema(schema, operation)
        assert set(envelope["properties"]) == {"results"} | extra, route
        assert envelope["properties"]["results"]["type"] == "array", route
        assert operation["operationId"].endswith("_list"), route
    for route in ("/api/v1/workspaces/", ws + "service-accounts/"):
        assert _body_schema(schema, paths[route]["get"])["type"] == "array", route


def test_deletes_document_their_body_and_answer_204(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    ws = "/api/v1/workspaces/{workspace_slug}/"
    delete = paths[ws]["delete"]
    body = delete["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][body]["required"] == ["confirm_slug"]
    assert {"400", "413", "415"} <= set(delete["responses"])
    assert "requestBody" in paths[ws + "service-accounts/{account_id}/permissions/"]["delete"]
    assert "requestBody" not in paths[ws + "projects/{project_id}/"]["delete"]
    for method, path, operation in _operations(schema):
        if method == "DELETE":
            assert [c for c in operation["responses"] if c.startswith("2")] == ["204"], path
            assert "content" not in operation["responses"]["204"], path


def test_a_revoked_key_answers_204_as_documented(client: Client) -> None:
    world = build_world("revoke")
    owner = f"Bearer {world.keys[Role.OWNER]}"
    keys = client.get(f"/api/v1/workspaces/{world.workspace.slug}/api-keys/", HTTP_AUTHORIZATION=owner).json()
    developer = next(k for k in keys["results"] if k["owner"] == world.users[Role.DEVELOPER].email)
    answer = client.delete(f"/api/v1/workspaces/{world.workspace.slug}/api-keys/{developer['id']}/",
                           HTTP_AUTHORIZATION=owner)
    assert answer.status_code == 204 and answer.content == b""
