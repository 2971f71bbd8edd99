"""Bad input gets a clear 4xx in the one error shape and writes nothing; CSRF and key precedence
(B7); the OpenAPI schema and docs are served."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership, Role, ServiceAccount
from core.tenancy import rls_bypass


def _error(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_malformed_json_is_400(world_a):
    response = world_a.client(Role.ADMIN).generic(
        "POST", world_a.url("service-accounts/"), "{not json", content_type="application/json"
    )
    _error(response, 400, "malformed_request")


def test_json_that_is_not_an_object_is_400(world_a):
    response = world_a.client(Role.ADMIN).post(world_a.url("service-accounts/"), ["x"], format="json")
    _error(response, 400)


def test_huge_body_is_413_before_anything_is_read(world_a, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1024
    response = world_a.client(Role.ADMIN).generic(
        "POST", world_a.url("service-accounts/"), '{"name": "' + "x" * 2000 + '"}', content_type="application/json"
    )
    _error(response, 413, "request_too_large")


@pytest.mark.parametrize(
    "payload",
    [{"name": ["x"], "role": "agent"}, {"name": "x", "role": 7},
     {"name": "x", "role": "agent", "is_restricted": "maybe"},
     {"name": "", "role": "agent"}, {"name": "x" * 101, "role": "agent"}, {"role": "agent"}],
)
def test_wrong_types_and_values_are_400_and_write_nothing(world_a, payload):
    _error(world_a.client(Role.ADMIN).post(world_a.url("service-accounts/"), payload, format="json"), 400)
    with rls_bypass():
        assert ServiceAccount.objects.for_workspace(world_a.workspace).count() == 1


@pytest.mark.parametrize("field", ["workspace", "workspace_id", "created_by", "id", "secret_hash"])
def test_client_cannot_set_protected_fields(world_a, field):
    payload = {"name": "x", "role": "agent", field: "00000000-0000-0000-0000-000000000000"}
    error = _error(world_a.client(Role.ADMIN).post(world_a.url("service-accounts/"), payload, format="json"), 400)
    assert field in error["details"]


def test_member_patch_cannot_change_user_or_workspace(world_a):
    target = Membership.objects.get(workspace=world_a.workspace, user=world_a.users[Role.VIEWER])
    response = world_a.client(Role.OWNER).patch(
        world_a.url(f"members/{target.pk}/"),
        {"role": "viewer", "user": str(world_a.users[Role.OWNER].pk)},
        format="json",
    )
    _error(response, 400)


def test_form_encoded_body_is_415(world_a):
    response = world_a.client(Role.ADMIN).post(world_a.url("service-accounts/"), {"name": "x", "role": "agent"})
    _error(response, 415)


def test_unknown_api_path_is_json_404(api, db):
    _error(api.get("/api/v1/nothing-here/"), 404, "not_found")


def test_unsupported_method_on_own_workspace_is_405(world_a):
    _error(world_a.client(Role.OWNER).put(world_a.url("members/"), {}, format="json"), 405)


def test_anonymous_is_401_with_the_shape(world_a, api):
    response = api.get(world_a.url("members/"))
    error = _error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert error["code"] == "not_authenticated"


def test_cookie_authenticated_unsafe_call_needs_csrf(world_a):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world_a.users[Role.ADMIN])
    response = client.post(world_a.url("service-accounts/"), {"name": "x", "role": "agent"}, format="json")
    error = _error(response, 403, "csrf_failed")
    assert "CSRF" in error["message"]
    # The same call with the token succeeds.
    token = "k" * 32
    client.cookies["csrftoken"] = token
    response = client.post(
        world_a.url("service-accounts/"), {"name": "x", "role": "agent"}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201


def test_key_authenticated_call_ignores_cookies_and_csrf(world_a):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world_a.users[Role.OWNER])  # an Owner's session cookie rides along…
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world_a.keys[Role.DEVELOPER]}")
    # …but the request acts as the Developer's key, and needs no CSRF token.
    assert client.get(world_a.url("audit-log/")).status_code == 403
    response = client.post(world_a.url("api-keys/"), {"name": "from ci"}, format="json")
    assert response.status_code == 201
    assert response.json()["owner"] == world_a.users[Role.DEVELOPER].email


def test_openapi_schema_and_docs_are_served(api, db):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/workspaces/{workspace_slug}/members/" in paths
    assert "/api/v1/workspaces/{workspace_slug}/api-keys/{key_id}/rotate/" in paths
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn.jsdelivr" not in docs.content


def test_list_endpoints_use_cursor_pagination(world_a):
    body = world_a.client(Role.OWNER).get(world_a.url("members/") + "?limit=2").json()
    assert set(body) == {"next", "previous", "results"}
    assert "cursor=" in body["next"]
