"""G6 (REST part): schemathesis generates requests from our OpenAPI schema and sends them to the
in-process app with an Owner's key. No input may produce a 5xx, and every answer must be one the
schema documents: its status code, its content type and its body's schema (the API does what its
documentation says). Path parameters name real objects of the workspace (a project, a flow and
its version, a run, an agent, a service account, a member, a key), so detail routes answer with
their objects, not only 404. A second pass calls workspace A's routes, with A's object ids, using
workspace B's key: nothing but 401/404 may come back, documented as well."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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
# No 5xx; a status code, a content type and a body that the operation documents.
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


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
def test_every_answer_is_documented_and_none_is_a_server_error(case):
    world, ids = _world()
    case.path_parameters = _real_ids(case, ids)
    headers = {"Authorization": f"Bearer {world.keys[Role.OWNER]}"}
    case.call_and_validate(headers=headers, checks=CONFORMANCE)


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_other_workspaces_key_only_gets_404(case):
    _, ids = _world()
    other, _ = _other_world()
    params = case.path_parameters or {}
    if "workspace_slug" not in params:
        return  # not a workspace route
    case.path_parameters = _real_ids(case, ids)
    headers = {"Authorization": f"Bearer {other.keys[Role.OWNER]}"}
    response = case.call_and_validate(headers=headers, checks=CONFORMANCE)
    # Besides 401/404, only refusals that come before any workspace is looked at: a body too large or
    # not JSON, or text the database cannot store (core.text_guard); the same for every workspace.
    refused_early = response.status_code in (413, 415) or (
        response.status_code == 400 and response.json()["error"]["code"] == "invalid_text"
    )
    assert response.status_code in (401, 404) or refused_early, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )


def _real_ids(case, ids: dict[str, str]) -> dict[str, object]:
    params = case.path_parameters or {}
    return {**params, **{name: ids[name] for name in params if name in ids}}


_cache: dict[str, tuple] = {}


def _fresh(key: str) -> tuple:
    """A world that still exists as built (fuzzed PATCH/DELETE calls may rename or delete it), with
    the ids of objects in it by path parameter name (calls may delete those: then they are 404s)."""
    import uuid

    from accounts.models import Workspace

    cached = _cache.get(key)
    workspace = cached[0].workspace if cached else None
    if workspace is None or not Workspace.objects.filter(pk=workspace.pk, slug=workspace.slug).exists():
        world = build_world(f"fuzz-{key}-{uuid.uuid4().hex[:8]}")
        _cache[key] = (world, _objects_of(world))
    return _cache[key]


def _objects_of(world) -> dict[str, str]:
    from accounts.models import ApiKey, Membership
    from core.tenancy import rls_bypass
    from tests.orchestration.factories import AgentFactory, FlowRunFactory, ProjectFactory

    workspace = world.workspace
    project = ProjectFactory(workspace=workspace)
    run = FlowRunFactory(flow_version__flow__project=project, flow_version__flow__workspace=workspace,
                         flow_version__workspace=workspace)
    with rls_bypass():
        member = Membership.objects.get(workspace=workspace, user=world.users[Role.VIEWER])
        key = ApiKey.all_objects.get(workspace=workspace, user=world.users[Role.DEVELOPER])
    return {
        "workspace_slug": workspace.slug, "project_id": str(project.pk), "flow_id": str(run.flow_id),
        "version_id": str(run.flow_version_id), "flow_run_id": str(run.pk),
        "agent_id": str(AgentFactory(workspace=workspace).pk), "account_id": str(world.agent.pk),
        "member_id": str(member.pk), "key_id": str(key.pk),
    }


def _world() -> tuple:
    return _fresh("a")


def _other_world() -> tuple:
    return _fresh("b")
