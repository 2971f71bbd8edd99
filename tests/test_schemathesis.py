"""G6 (REST part): schemathesis generates requests from our OpenAPI schema and sends them to the
in-process app with an Owner's key; no input may produce a 5xx. A second pass calls workspace A's
routes with workspace B's key: nothing but 401/404 may come back."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from accounts.models import Role
from tests.conftest import build_world


def _load_schema():
    import json

    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.utils.encoders import JSONEncoder

    from config.wsgi import application

    raw = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), cls=JSONEncoder))
    loaded = schemathesis.openapi.from_dict(raw)
    loaded.app = application
    return loaded


schema = _load_schema()
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """The WSGI handler closes DB connections at request end; inside a test transaction that
    would end the test's own transaction, so hold it open the way Django's test client does."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case):
    world = _world()
    params = case.path_parameters or {}
    slug = {"workspace_slug": world.workspace.slug} if "workspace_slug" in params else {}
    case.path_parameters = {**params, **slug}
    response = case.call(headers={"Authorization": f"Bearer {world.keys[Role.OWNER]}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_other_workspaces_key_only_gets_404(case):
    world = _world()
    other = _other_world()
    params = case.path_parameters or {}
    if "workspace_slug" not in params:
        return  # not a workspace route
    case.path_parameters = {**params, "workspace_slug": world.workspace.slug}
    response = case.call(headers={"Authorization": f"Bearer {other.keys[Role.OWNER]}"})
    assert response.status_code in (401, 404, 413, 415), (
        f"{case.method} {case.formatted_path} -> {response.status_code}"
    )


_cache: dict[str, object] = {}


def _fresh(key: str):
    """A world that still exists as built (fuzzed PATCH/DELETE calls may rename or delete it)."""
    import uuid

    from accounts.models import Workspace

    world = _cache.get(key)
    if world is None or not Workspace.objects.filter(pk=world.workspace.pk, slug=world.workspace.slug).exists():
        world = _cache[key] = build_world(f"fuzz-{key}-{uuid.uuid4().hex[:8]}")
    return world


def _world():
    return _fresh("a")


def _other_world():
    return _fresh("b")
