"""C1: another workspace's objects answer 404 on every workspace route, for every method and for
both session and API-key callers; and every such route is served by the guarded base view."""

from __future__ import annotations

import json

import pytest

from accounts.api.guard import WorkspaceAPIView
from accounts.models import Role
from tests.isolation import ID_PROVIDERS, workspace_routes

ROUTES = workspace_routes()


def call(client, method, url):
    if method == "GET":
        return client.get(url)
    return getattr(client, method.lower())(url, data=json.dumps({}), content_type="application/json")


def test_routes_are_discovered():
    assert len(ROUTES) >= 10


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.template)
def test_every_workspace_route_is_guarded_and_has_id_providers(route):
    assert route.view_class is not None and issubclass(route.view_class, WorkspaceAPIView)
    missing = [k for k in route.kwargs if k != "workspace_slug" and k not in ID_PROVIDERS]
    assert not missing, f"add an id provider to tests/isolation.py for {missing}"
    assert route.methods, "a workspace view must declare a scope_map"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.template)
@pytest.mark.parametrize("as_key", [False, True], ids=["session", "api-key"])
def test_other_workspace_member_gets_404(route, as_key, world_a, world_b):
    url = route.url_for(world_a)
    client = world_b.client(Role.OWNER, key=as_key)
    for method in route.methods:
        response = call(client, method, url)
        assert response.status_code == 404, f"{method} {url} -> {response.status_code} {response.content[:200]!r}"
        body = response.json()
        assert body["error"]["code"] == "not_found"
        assert world_a.workspace.name not in response.content.decode()


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.template)
def test_agent_key_of_other_workspace_gets_404(route, world_a, world_b):
    url = route.url_for(world_a)
    client = world_b.client(Role.AGENT)
    for method in route.methods:
        response = call(client, method, url)
        assert response.status_code == 404, f"{method} {url} -> {response.status_code}"


def test_own_workspace_objects_are_reachable_so_404s_above_mean_isolation(world_a):
    # The same URLs answer the owner of A with something other than 404 for GET routes.
    client = world_a.client(Role.OWNER)
    for route in ROUTES:
        if "GET" in route.methods:
            response = client.get(route.url_for(world_a))
            assert response.status_code == 200, f"GET {route.template} -> {response.status_code}"


def test_names_are_unique_per_workspace_so_uniqueness_errors_leak_nothing(world_a, world_b):
    # C3: "agent" exists in workspace A; workspace B may use the same name freely…
    admin_b = world_b.client(Role.ADMIN)
    deployer = {"name": "deployer", "role": "agent"}
    assert admin_b.post(world_b.url("service-accounts/"), deployer, format="json").status_code == 201
    assert world_a.client(Role.ADMIN).post(world_a.url("service-accounts/"), deployer, format="json").status_code == 201
    # …and a clash inside one workspace says nothing about any other.
    clash = admin_b.post(world_b.url("service-accounts/"), deployer, format="json")
    assert clash.status_code == 409 and "acme" not in clash.content.decode()


def test_primary_keys_in_urls_are_uuids():
    import re

    for route in ROUTES:
        for name in route.kwargs:
            if name != "workspace_slug":
                assert re.search(rf"<uuid:{name}>", route.template), route.template
