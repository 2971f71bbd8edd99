"""Deeply nested JSON is refused with a clear 400 before any parser reads it: with and without
credentials, on the allauth endpoints and the REST API alike (Python's JSON parser raises
RecursionError about a thousand levels down, which used to surface as a 500). GraphQL answers the
same in its own error shape (tests/accounts/test_graphql_transport.py)."""

from __future__ import annotations

import json

import pytest

from accounts.models import Role
from core.middleware import json_nesting_exceeds
from orchestration.models import Project

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("[[[]]]", 3, False),
    ("[[[[]]]]", 3, True),
    ('{"a": {"b": {"c": 1}}}', 3, False),
    ('{"a": {"b": {"c": {}}}}', 3, True),
    ('["[[[[[[", "{{{{{{", "\\"[[[[[["]', 1, False),  # brackets inside strings, escaped quotes
    ('[{"k": "]]]]]]"}, [[[1]]]]', 3, True),  # a string full of closers does not lower the depth
    ("[]" * 500, 1, False),  # many brackets, shallow
    (DEEP, 100, True),
])
def test_nesting_is_measured_outside_strings(text: str, limit: int, expected: bool) -> None:
    assert json_nesting_exceeds(text.encode(), limit) is expected


def _assert_too_deep(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["error"]["code"] == "json_too_deep"
    assert "more than 100 levels deep" in body["error"]["message"]


@pytest.mark.parametrize("path", [
    "/_allauth/app/v1/auth/login",
    "/_allauth/browser/v1/auth/login",
    "/_allauth/browser/v1/auth/signup",
    "/_allauth/browser/v1/auth/password/request",
])
def test_anonymous_deep_bodies_get_400(client, path: str) -> None:  # type: ignore[no-untyped-def]
    _assert_too_deep(client.post(path, DEEP, content_type="application/json"))


def test_deep_bodies_with_a_key_get_400_and_write_nothing(world_a) -> None:  # type: ignore[no-untyped-def]
    client = world_a.client(Role.DEVELOPER, key=True)
    deep_value = json.loads("[" * 90 + "]" * 90)  # parseable here, nested past the limit once wrapped
    for _ in range(20):
        deep_value = [deep_value]
    cases = [
        ("projects/", {"name": "deep", "description": deep_value}),
        ("flows/register/", {"project": "deep", "flow": {"name": "x", "tasks": deep_value}}),
        ("flow-runs/", {"flow": "00000000-0000-0000-0000-000000000000", "parameters": {"p": deep_value}}),
    ]
    for path, body in cases:
        _assert_too_deep(client.post(world_a.url(path), json.dumps(body), content_type="application/json"))
    assert not Project.all_objects.filter(workspace=world_a.workspace, name="deep").exists()


def test_bodies_at_the_limit_still_reach_the_view(world_a) -> None:  # type: ignore[no-untyped-def]
    client = world_a.client(Role.DEVELOPER, key=True)
    nested = "[" * 99 + "]" * 99  # 100 levels with the object around it
    body = '{"name": "fine", "description": ' + json.dumps(nested) + ', "extra": ' + nested + "}"
    response = client.post(world_a.url("projects/"), body, content_type="application/json")
    # the view's own validation answers (the unknown field), not the depth guard
    assert response.status_code == 400 and response.json()["error"]["code"] != "json_too_deep", response.content
