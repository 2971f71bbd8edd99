"""A change of access made in one process cuts a key off in another process's warm cache on the very
next request: a real server subprocess (``python -m config.embedded``) on the test database and the
test Redis, its cache warmed by requests, the change made here through the services.

No sleep and no race: a service's change commits together with its workspace's generation (the
same transaction); the server reads the generation before trusting its cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from accounts.authz import principal_for_user
from accounts.models import ApiKey, Membership, Role
from accounts.services import api_keys, members, service_accounts
from core.tenancy import rls_bypass, workspace_scope
from tests.conftest import WorkspaceWorld, build_world
from tests.sdk.conftest import LiveServer


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    log_dir: Path = tmp_path_factory.mktemp("key-cache-server")
    live = LiveServer(periodic_every=None, log_dir=log_dir)
    live.start()
    yield live
    live.stop()


@pytest.fixture
def acme(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def _client(server: LiveServer, world: WorkspaceWorld, role: str) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1/workspaces/{world.workspace.slug}/",
                        headers={"Authorization": f"Bearer {world.keys[role]}"}, timeout=15)


def _warm(http: httpx.Client, path: str = "members/", status: int = 200) -> None:
    # The first request verifies the key in the database, the next ones are served from the cache.
    for _ in range(2):
        response = http.get(path)
        assert response.status_code == status, response.text


def _owner(world: WorkspaceWorld):  # type: ignore[no-untyped-def]
    return principal_for_user(world.users[Role.OWNER], world.workspace)


def test_the_servers_cache_is_warm_and_a_revocation_here_cuts_the_next_request_off(server, acme):
    http = _client(server, acme, Role.ADMIN)
    _warm(http)
    # Proof that the server answers from its cache: a change that moves no generation (a bulk
    # update, which the services never use for access) goes unnoticed there.
    with rls_bypass():
        key = ApiKey.objects.for_workspace(acme.workspace).get(user=acme.users[Role.ADMIN])
        ApiKey.objects.for_workspace(acme.workspace).filter(pk=key.pk).update(revoked_at=key.created_at)
    assert http.get("members/").status_code == 200
    with rls_bypass():
        ApiKey.objects.for_workspace(acme.workspace).filter(pk=key.pk).update(revoked_at=None)
    # The real revocation: committed, announced, and the very next request is refused.
    with workspace_scope([acme.workspace.pk]):
        api_keys.api_key_revoke(actor=_owner(acme), key=ApiKey.objects.for_workspace(acme.workspace).get(pk=key.pk))
    response = http.get("members/")
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_a_role_change_here_applies_to_the_servers_next_request(server, acme):
    http = _client(server, acme, Role.ADMIN)
    _warm(http, "audit-log/")
    membership = Membership.objects.get(workspace=acme.workspace, user=acme.users[Role.ADMIN])
    with workspace_scope([acme.workspace.pk]):
        members.membership_change_role(actor=_owner(acme), membership=membership, role=Role.VIEWER)
    assert http.get("audit-log/").status_code == 403


def test_a_membership_removal_here_cuts_the_servers_next_request_off(server, acme):
    http = _client(server, acme, Role.DEVELOPER)
    _warm(http)
    membership = Membership.objects.get(workspace=acme.workspace, user=acme.users[Role.DEVELOPER])
    with workspace_scope([acme.workspace.pk]):
        members.membership_remove(actor=_owner(acme), membership=membership)
    assert http.get("members/").status_code == 401


def test_a_service_account_deletion_here_cuts_its_key_off_on_the_server(server, acme):
    http = _client(server, acme, Role.AGENT)
    _warm(http, status=403)  # authenticated; the Agent role reads no members
    admin = principal_for_user(acme.users[Role.ADMIN], acme.workspace)
    with workspace_scope([acme.workspace.pk]):
        service_accounts.service_account_delete(actor=admin, account=acme.agent)
    response = http.get("members/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "api_key_revoked"
