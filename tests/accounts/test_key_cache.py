"""The verified-key cache (accounts/key_cache.py): a warm key costs no query of its own, and every
change of access cuts the very next request off, whichever API made the change.

``transactional_db`` throughout: changes commit as in production, and the generation they move
commits with them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import key_cache
from accounts.api.guard import WorkspaceAPIView
from accounts.authz import principal_for_user
from accounts.models import ApiKey, Membership, Role, User
from accounts.services import api_keys, service_accounts
from core.tenancy import rls_bypass, workspace_scope
from tests.conftest import WorkspaceWorld, build_world
from tests.factories import make_key

GRAPHQL_URL = "/graphql"
REVOKE_API_KEY = """
mutation($workspace: String!, $id: ID!) {
  revokeApiKey(workspace: $workspace, id: $id) { apiKey { id revokedAt } errors { code } }
}
"""
CHANGE_ROLE = """
mutation($workspace: String!, $memberId: ID!, $role: String!) {
  changeMemberRole(workspace: $workspace, memberId: $memberId, role: $role) { member { role } errors { code } }
}
"""
REMOVE_MEMBER = """
mutation($workspace: String!, $memberId: ID!) {
  removeMember(workspace: $workspace, memberId: $memberId) { ok errors { code } }
}
"""
DELETE_SERVICE_ACCOUNT = """
mutation($workspace: String!, $id: ID!) { deleteServiceAccount(workspace: $workspace, id: $id) { ok errors { code } } }
"""


@pytest.fixture
def acme(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def _key_queries(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "accounts_apikey" in q["sql"]]


def warm(client: APIClient, url: str, status: int = 200) -> None:
    """Make the key a cache hit, and prove it is one (no query reads the key). A 403 is
    authenticated too: the Agent role reads no listing at all."""
    assert client.get(url).status_code == status  # verified in the database, then remembered
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == status
    assert _key_queries(ctx) == [], "the key was not served from the cache"


def _error(response) -> str:  # type: ignore[no-untyped-def]
    return response.json()["error"]["code"]


def _key_row(world: WorkspaceWorld, role: str) -> ApiKey:
    with rls_bypass():
        if role == Role.AGENT:
            return ApiKey.objects.for_workspace(world.workspace).get(service_account=world.agent)
        return ApiKey.objects.for_workspace(world.workspace).get(user=world.users[role])


def _membership(world: WorkspaceWorld, role: str) -> Membership:
    return Membership.objects.get(workspace=world.workspace, user=world.users[role])


def _gql(user: User, query: str, variables: dict) -> dict:
    client = Client()
    client.force_login(user)
    response = client.post(GRAPHQL_URL, {"query": query, "variables": variables}, content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


# --- Revocation, rotation, deletion, expiry -------------------------------------------------------


def test_revocation_through_rest_cuts_the_next_request_off(acme):
    client = acme.client(Role.ADMIN, key=True)
    warm(client, acme.url("members/"))
    key = _key_row(acme, Role.ADMIN)
    assert acme.client(Role.OWNER).delete(acme.url(f"api-keys/{key.pk}/")).status_code == 204
    response = client.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_revoked"


def test_revocation_through_graphql_cuts_the_next_request_off(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    warm(client, acme.url("members/"))
    key = _key_row(acme, Role.DEVELOPER)
    payload = _gql(acme.users[Role.DEVELOPER], REVOKE_API_KEY, {"workspace": "acme", "id": str(key.pk)})
    assert payload["revokeApiKey"]["errors"] == []
    response = client.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_revoked"


def test_rotation_without_grace_cuts_the_old_key_off(acme):
    owner = acme.client(Role.OWNER)
    created = owner.post(acme.url("api-keys/"), {"name": "ci"}, format="json").json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['secret']}")
    warm(client, acme.url("members/"))
    assert owner.post(acme.url(f"api-keys/{created['id']}/rotate/"), {}, format="json").status_code == 201
    response = client.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_revoked"


def test_a_deleted_key_row_is_unknown_on_the_next_request(acme):
    client = acme.client(Role.VIEWER, key=True)
    warm(client, acme.url("members/"))
    with workspace_scope([acme.workspace.pk]):
        _key_row(acme, Role.VIEWER).delete()
    response = client.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_invalid"


def test_expiry_is_checked_on_every_hit(acme, api):
    _, secret = make_key(workspace=acme.workspace, user=acme.users[Role.ADMIN],
                         expires_at=timezone.now() + timedelta(minutes=10))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    warm(api, acme.url("members/"))
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        response = api.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_expired"


def test_deleting_the_workspace_cuts_its_keys_off(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    warm(client, acme.url("members/"))
    response = acme.client(Role.OWNER).delete(acme.url(), {"confirm_slug": "acme"}, format="json")
    assert response.status_code == 204, response.content
    assert client.get(acme.url("members/")).status_code == 401


# --- Roles and memberships ------------------------------------------------------------------------


def test_a_role_change_through_rest_applies_to_the_next_request(acme):
    client = acme.client(Role.ADMIN, key=True)
    warm(client, acme.url("audit-log/"))
    membership = _membership(acme, Role.ADMIN)
    response = acme.client(Role.OWNER).patch(acme.url(f"members/{membership.pk}/"), {"role": "viewer"}, format="json")
    assert response.status_code == 200, response.content
    assert client.get(acme.url("audit-log/")).status_code == 403


def test_a_role_change_through_graphql_applies_to_the_next_request(acme):
    client = acme.client(Role.ADMIN, key=True)
    warm(client, acme.url("audit-log/"))
    membership = _membership(acme, Role.ADMIN)
    payload = _gql(acme.users[Role.OWNER], CHANGE_ROLE,
                   {"workspace": "acme", "memberId": str(membership.pk), "role": "viewer"})
    assert payload["changeMemberRole"]["errors"] == []
    assert client.get(acme.url("audit-log/")).status_code == 403


def test_membership_removal_through_rest_cuts_the_next_request_off(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    warm(client, acme.url("members/"))
    membership = _membership(acme, Role.DEVELOPER)
    assert acme.client(Role.OWNER).delete(acme.url(f"members/{membership.pk}/")).status_code == 204
    assert client.get(acme.url("members/")).status_code == 401


def test_membership_removal_through_graphql_cuts_the_next_request_off(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    warm(client, acme.url("members/"))
    membership = _membership(acme, Role.DEVELOPER)
    payload = _gql(acme.users[Role.OWNER], REMOVE_MEMBER, {"workspace": "acme", "memberId": str(membership.pk)})
    assert payload["removeMember"]["errors"] == []
    assert client.get(acme.url("members/")).status_code == 401


def test_a_deactivated_user_is_cut_off_at_once(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    warm(client, acme.url("members/"))
    user = acme.users[Role.DEVELOPER]
    user.is_active = False
    user.save()
    response = client.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_revoked"


def test_signing_in_does_not_invalidate_the_cache(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    warm(client, acme.url("members/"))
    Client().force_login(acme.users[Role.DEVELOPER])  # stamps last_login only
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(acme.url("members/")).status_code == 200
    assert _key_queries(ctx) == []


# --- Service accounts ----------------------------------------------------------------------------


def test_service_account_deletion_through_rest_cuts_its_key_off(acme):
    agent = acme.client(Role.AGENT)
    warm(agent, acme.url("members/"), 403)
    assert acme.client(Role.ADMIN).delete(acme.url(f"service-accounts/{acme.agent.pk}/")).status_code == 204
    response = agent.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_revoked"


def test_service_account_deletion_through_graphql_cuts_its_key_off(acme):
    agent = acme.client(Role.AGENT)
    warm(agent, acme.url("members/"), 403)
    payload = _gql(acme.users[Role.ADMIN], DELETE_SERVICE_ACCOUNT, {"workspace": "acme", "id": str(acme.agent.pk)})
    assert payload["deleteServiceAccount"]["errors"] == []
    assert agent.get(acme.url("members/")).status_code == 401


def test_a_service_account_role_change_applies_to_the_next_request(acme):
    agent = acme.client(Role.AGENT)
    warm(agent, acme.url("members/"), 403)  # the Agent role reads no members
    admin = principal_for_user(acme.users[Role.ADMIN], acme.workspace)
    with workspace_scope([acme.workspace.pk]):
        service_accounts.service_account_update(actor=admin, account=acme.agent, role=Role.VIEWER)
    assert agent.get(acme.url("members/")).status_code == 200


def test_a_service_account_deactivated_by_a_bulk_update_elsewhere_needs_its_bump(acme):
    """A write that sends no signal is invisible to the cache until its generation moves: the
    services that write that way bump explicitly (this shows why they must)."""
    agent = acme.client(Role.AGENT)
    warm(agent, acme.url("members/"), 403)
    with workspace_scope([acme.workspace.pk]):
        type(acme.agent).objects.for_workspace(acme.workspace).filter(pk=acme.agent.pk).update(is_active=False)
    assert agent.get(acme.url("members/")).status_code == 403  # still the cached verification
    key_cache.bump(acme.workspace.pk)
    response = agent.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_revoked"


# --- Bookkeeping ---------------------------------------------------------------------------------


def test_last_use_is_still_stamped_on_hits_once_per_window(acme, settings):
    client = acme.client(Role.VIEWER, key=True)
    warm(client, acme.url("members/"))
    later = timezone.now() + timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS + 5)
    with time_machine.travel(later, tick=False):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(acme.url("members/")).status_code == 200
        assert [q for q in _key_queries(ctx) if q.startswith("SELECT")] == []  # still a hit
        assert [q for q in _key_queries(ctx) if q.startswith("UPDATE")] != []  # but stamped
        assert _key_row(acme, Role.VIEWER).last_used_at == later
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(acme.url("members/")).status_code == 200
        assert _key_queries(ctx) == []  # once per window


class _RolledBack(Exception):
    pass


@pytest.mark.parametrize("cached", [True, False], ids=["cache hit", "verified in the database"])
def test_a_stamp_rolled_back_with_its_request_is_written_by_the_next_one(acme, settings, cached):
    """A request that rolls back (one the agents' lane hands on to the DRF view, a failed one)
    takes its stamp with it; the cache must not think the window's stamp is written."""
    client = acme.client(Role.VIEWER, key=True)
    before = _key_row(acme, Role.VIEWER).last_used_at
    at = timezone.now()
    if cached:
        warm(client, acme.url("members/"))
        before = _key_row(acme, Role.VIEWER).last_used_at
        at = timezone.now() + timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS + 5)
    with time_machine.travel(at, tick=False):
        with pytest.raises(_RolledBack), transaction.atomic():
            api_keys.api_key_authenticate(acme.keys[Role.VIEWER])
            raise _RolledBack
        assert _key_row(acme, Role.VIEWER).last_used_at == before
        assert client.get(acme.url("members/")).status_code == 200
        assert _key_row(acme, Role.VIEWER).last_used_at == at


def test_the_cache_is_bounded(acme, settings):
    settings.API_KEY_CACHE_SIZE = 1
    first, second = acme.client(Role.VIEWER, key=True), acme.client(Role.DEVELOPER, key=True)
    warm(first, acme.url("members/"))
    warm(second, acme.url("members/"))  # pushes the first key out
    with CaptureQueriesContext(connection) as ctx:
        assert first.get(acme.url("members/")).status_code == 200
    assert [q for q in _key_queries(ctx) if q.startswith("SELECT")] != []


def test_zero_seconds_turns_the_cache_off(acme, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    client = acme.client(Role.VIEWER, key=True)
    for _ in range(3):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(acme.url("members/")).status_code == 200
        assert [q for q in _key_queries(ctx) if q.startswith("SELECT")] != []


def test_a_hit_on_a_workspace_endpoint_reads_the_generation_in_the_statement_that_scopes_it(acme):
    client = acme.client(Role.AGENT)
    warm(client, acme.url("members/"), 403)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(acme.url("members/")).status_code == 403
    generation_reads = [q["sql"] for q in ctx.captured_queries if "accounts_authgeneration" in q["sql"]]
    assert len(generation_reads) == 1
    assert "set_config" in generation_reads[0]  # no round trip of its own
    assert _key_queries(ctx) == []


def test_a_change_rolled_back_moves_no_generation(acme):
    client = acme.client(Role.ADMIN, key=True)
    warm(client, acme.url("members/"))
    key = _key_row(acme, Role.ADMIN)
    owner = principal_for_user(acme.users[Role.OWNER], acme.workspace)

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), transaction.atomic(), workspace_scope([acme.workspace.pk]):
        api_keys.api_key_revoke(actor=owner, key=key)
        raise Abandon
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(acme.url("members/")).status_code == 200
    assert _key_queries(ctx) == [], "the key was verified again although nothing changed"


def test_the_cache_does_not_need_redis(acme, settings):
    """The generation lives in the database: with Redis unreachable a warm key is still served from
    the cache, and a revocation still cuts the next request off."""
    client = acme.client(Role.DEVELOPER, key=True)
    warm(client, acme.url("members/"))
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(acme.url("members/")).status_code == 200
    assert _key_queries(ctx) == []
    key = _key_row(acme, Role.DEVELOPER)
    assert acme.client(Role.OWNER).delete(acme.url(f"api-keys/{key.pk}/")).status_code == 204
    response = client.get(acme.url("members/"))
    assert response.status_code == 401 and _error(response) == "api_key_revoked"


def test_only_the_workspace_guard_takes_keys_unconfirmed():
    """A view that says it confirms cached keys must be one whose guard does (accounts/api/guard.py);
    any other view gets each key confirmed by the authenticator."""

    def views(patterns):  # type: ignore[no-untyped-def]
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from views(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                view_class = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
                if view_class is not None:
                    yield view_class

    found = list(views(get_resolver().url_patterns))
    deferring = [v for v in found if getattr(v, "confirms_cached_keys", False)]
    assert deferring, "no view defers: the guard's fast path is not in use"
    assert all(issubclass(v, WorkspaceAPIView) for v in deferring)
    assert any(not getattr(v, "confirms_cached_keys", False) for v in found)
