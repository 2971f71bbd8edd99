"""config/key_lane.py: API requests with a key and no cookie skip the session-only middleware, and
answer exactly as through the whole chain (status, headers, body), errors included."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from accounts.models import Role
from config.key_lane import SESSION_ONLY, FlowdeckWSGIHandler, is_key_request
from core.tenancy import rls_bypass
from orchestration.models import Project
from tests.conftest import WorkspaceWorld

# Headers that differ between two identical requests made a moment apart.
VOLATILE = {"date", "x-request-id"}


@pytest.fixture(scope="module")
def app() -> FlowdeckWSGIHandler:
    return FlowdeckWSGIHandler()


def _call(handler: Any, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), headers

    # As Django's test client does: the request must not close the test's connection (its transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        # A fresh body stream each time: the same environ goes through both chains.
        response = handler({**environ, "wsgi.input": io.BytesIO(environ["test.body"])}, start_response)
        body = b"".join(response)
        response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    headers = {name.lower(): value for name, value in answer["headers"] if name.lower() not in VOLATILE}
    return answer["status"], headers, body


def _environ(method: str, path: str, key: str | None, body: Any = None, raw: bytes | None = None,
             **extra: str) -> dict[str, Any]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    request = RequestFactory().generic(method, path, data, content_type="application/json", **headers, **extra)
    environ = {**request.environ, "test.body": data}
    if not environ.get("HTTP_COOKIE"):
        del environ["HTTP_COOKIE"]  # RequestFactory always sends one, empty
    return environ


def test_which_requests_take_the_key_lane():
    bearer = {"PATH_INFO": "/api/v1/workspaces/acme/projects/", "HTTP_AUTHORIZATION": "Bearer fd_u_x"}
    assert is_key_request(bearer)
    assert is_key_request({**bearer, "HTTP_AUTHORIZATION": "bearer fd_u_x"})
    assert not is_key_request({**bearer, "HTTP_COOKIE": "flowdeck_session=abc"})  # a browser: the whole chain
    assert not is_key_request({**bearer, "PATH_INFO": "/graphql"})
    assert not is_key_request({**bearer, "PATH_INFO": "/_allauth/browser/v1/auth/session"})
    assert not is_key_request({**bearer, "HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"})
    assert not is_key_request({"PATH_INFO": "/api/v1/me/"})


def test_the_key_lane_drops_only_session_middleware(app):
    assert set(settings.MIDDLEWARE) >= SESSION_ONLY, "a renamed middleware would silently stay in the lane"
    assert app.key_lane.middleware == [name for name in settings.MIDDLEWARE if name not in SESSION_ONLY]
    # The security headers, the body and text guards and the 503 on a lost database stay.
    for kept in ("core.security_headers.SecurityHeadersMiddleware", "core.middleware.BodySizeLimitMiddleware",
                 "core.middleware.JsonDepthLimitMiddleware", "core.text_guard.TextGuardMiddleware",
                 "core.middleware.DatabaseUnavailableMiddleware"):
        assert kept in app.key_lane.middleware


@pytest.mark.parametrize(("role", "method", "suffix", "body", "raw"), [
    (Role.DEVELOPER, "GET", "projects/", None, None),
    (Role.AGENT, "GET", "agents/", None, None),
    (Role.DEVELOPER, "POST", "projects/", {"name": ""}, None),  # invalid: 400
    (Role.VIEWER, "POST", "projects/", {"name": "x"}, None),  # not allowed: 403
    (Role.DEVELOPER, "PUT", "projects/", {}, None),  # 405
    (Role.DEVELOPER, "POST", "projects/", None, b'{"name": "a\\u0000b"}'),  # NUL: the text guard's 400
    (Role.DEVELOPER, "POST", "projects/", None, b"[" * 200 + b"]" * 200),  # too deep: 400
    (Role.DEVELOPER, "POST", "projects/", None, b'{"name": '),  # malformed JSON
    (Role.DEVELOPER, "GET", "projects", None, None),  # no trailing slash
])
def test_answers_match_the_whole_chain(app, world_a: WorkspaceWorld, role, method, suffix, body, raw):
    environ = _environ(method, world_a.url(suffix), world_a.keys[role], body, raw)
    assert is_key_request(environ)
    assert _call(app.key_lane, environ) == _call(app.full, environ)


@pytest.mark.parametrize("case", ["other_workspace", "unknown_key", "malformed_header"])
def test_refusals_match_the_whole_chain(app, world_a: WorkspaceWorld, world_b: WorkspaceWorld, case):
    key = {"other_workspace": world_b.keys[Role.OWNER], "unknown_key": "fd_u_" + "x" * 40,
           "malformed_header": "  "}[case]
    environ = _environ("GET", world_a.url("projects/"), None, HTTP_AUTHORIZATION=f"Bearer {key}")
    lane, full = _call(app.key_lane, environ), _call(app.full, environ)
    assert lane == full
    assert lane[0] in (401, 404)
    assert world_a.workspace.slug not in lane[2].decode() or case == "other_workspace"


def test_a_write_through_the_lane_commits_and_is_scoped(app, world_a: WorkspaceWorld):
    environ = _environ("POST", world_a.url("projects/"), world_a.keys[Role.DEVELOPER], {"name": "lane"})
    status, headers, body = _call(app, environ)
    assert status == 201, body
    assert headers["content-type"] == "application/json"
    with rls_bypass():
        created = Project.all_objects.get(pk=json.loads(body)["id"])
    assert created.workspace_id == world_a.workspace.pk and created.name == "lane"


def test_a_request_with_a_cookie_keeps_the_session_middleware(app, world_a: WorkspaceWorld):
    """A key with a cookie goes the whole way (the cookie is still ignored for authentication)."""
    environ = _environ("GET", world_a.url("projects/"), world_a.keys[Role.DEVELOPER],
                       HTTP_COOKIE=f"{settings.SESSION_COOKIE_NAME}=not-a-session")
    assert not is_key_request(environ)
    status, _, body = _call(app, environ)
    assert status == 200, body
