"""B1–B3: key format, storage, authentication, expiry, revocation and rotation."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts import keys
from accounts.authz import principal_for_user
from accounts.models import ApiKey, Role
from accounts.services import api_keys, members
from core.errors import InvalidInput, Unauthenticated
from core.tenancy import rls_bypass, workspace_scope
from tests.factories import make_key


def test_generated_key_format_prefix_entropy_and_checksum():
    user_key = keys.generate("user")
    sa_key = keys.generate("service_account")
    assert re.fullmatch(r"fd_u_[0-9A-Za-z]{39}", user_key.secret)
    assert re.fullmatch(r"fd_sa_[0-9A-Za-z]{39}", sa_key.secret)
    assert keys.RANDOM_BYTES * 8 >= 128
    assert keys.parse(user_key.secret).lookup_prefix == user_key.lookup_prefix
    assert user_key.secret_hash == keys.hash_secret(user_key.secret) and len(user_key.secret_hash) == 64


@given(st.integers(min_value=5, max_value=43), st.sampled_from(keys.ALPHABET))
def test_any_single_character_typo_fails_the_checksum(position, replacement):
    secret = keys.generate("user").secret
    if secret[position] == replacement:
        return
    mistyped = secret[:position] + replacement + secret[position + 1 :]
    assert keys.parse(mistyped) is None


def test_malformed_key_is_rejected_without_a_query(db):
    secret = keys.generate("user").secret
    with CaptureQueriesContext(connection) as ctx, pytest.raises(Unauthenticated) as exc:
        api_keys.api_key_authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert exc.value.code == "api_key_malformed"
    assert len(ctx.captured_queries) == 0


def test_only_hash_and_prefix_are_stored(world_a):
    with rls_bypass():
        key = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.OWNER])
    secret = world_a.keys[Role.OWNER]
    stored = " ".join(str(getattr(key, f.attname)) for f in ApiKey._meta.fields)
    assert secret not in stored
    assert key.secret_hash == keys.hash_secret(secret)


def test_key_authenticates_and_acts_only_in_its_workspace(world_a, world_b):
    response = world_a.client(Role.DEVELOPER, key=True).get(world_a.url("members/"))
    assert response.status_code == 200
    response = world_a.client(Role.DEVELOPER, key=True).get(world_b.url("members/"))
    assert response.status_code == 404


def test_expired_key_gets_401_api_key_expired(world_a, api):
    _, secret = make_key(workspace=world_a.workspace, user=world_a.users[Role.ADMIN],
                         expires_at=timezone.now() - timedelta(seconds=1))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = api.get(world_a.url("members/"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"


def test_revoked_key_fails_on_the_very_next_request(world_a):
    client = world_a.client(Role.ADMIN, key=True)
    assert client.get(world_a.url("members/")).status_code == 200
    with rls_bypass():
        key = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.ADMIN])
    owner = world_a.client(Role.OWNER)
    assert owner.delete(world_a.url(f"api-keys/{key.pk}/")).status_code == 204
    response = client.get(world_a.url("members/"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_unknown_and_garbage_keys_get_clear_401s(world_a, api):
    api.credentials(HTTP_AUTHORIZATION="Bearer " + keys.generate("user").secret)
    response = api.get(world_a.url("members/"))
    assert response.status_code == 401 and response.json()["error"]["code"] == "api_key_invalid"
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-key")
    assert api.get(world_a.url("members/")).json()["error"]["code"] == "api_key_malformed"
    api.credentials(HTTP_AUTHORIZATION="Token abc")
    assert api.get(world_a.url("members/")).status_code == 401


def test_rotation_keeps_old_key_for_the_grace_period(world_a):
    owner = world_a.client(Role.OWNER)
    created = owner.post(world_a.url("api-keys/"), {"name": "ci"}, format="json").json()
    old_secret = created["secret"]
    rotated = owner.post(world_a.url(f"api-keys/{created['id']}/rotate/"), {"grace_seconds": 3600}, format="json")
    assert rotated.status_code == 201
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret
    for secret in (old_secret, new_secret):
        client = world_a.client(Role.OWNER)
        client.logout()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert client.get(world_a.url("members/")).status_code == 200
    with rls_bypass():
        old = ApiKey.objects.for_workspace(world_a.workspace).get(pk=created["id"])
    assert old.expires_at <= timezone.now() + timedelta(seconds=3601)


def test_rotation_without_grace_revokes_at_once(world_a, api):
    owner = world_a.client(Role.OWNER)
    created = owner.post(world_a.url("api-keys/"), {"name": "ci"}, format="json").json()
    owner.post(world_a.url(f"api-keys/{created['id']}/rotate/"), {}, format="json")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {created['secret']}")
    assert api.get(world_a.url("members/")).json()["error"]["code"] == "api_key_revoked"


def test_secret_is_shown_only_in_the_creating_response(world_a):
    owner = world_a.client(Role.OWNER)
    created = owner.post(world_a.url("api-keys/"), {"name": "laptop"}, format="json").json()
    listing = owner.get(world_a.url("api-keys/")).content.decode()
    detail = owner.get(world_a.url(f"api-keys/{created['id']}/")).content.decode()
    assert created["secret"] not in listing and created["secret"] not in detail
    assert "secret" not in owner.get(world_a.url(f"api-keys/{created['id']}/")).json()


def test_key_never_acts_above_its_owners_role_even_after_demotion(world_a):
    owner_principal = principal_for_user(world_a.users[Role.OWNER], world_a.workspace)
    with rls_bypass():
        membership = world_a.workspace.memberships.get(user=world_a.users[Role.ADMIN])
    admin_key_client = world_a.client(Role.ADMIN, key=True)
    assert admin_key_client.get(world_a.url("audit-log/")).status_code == 200
    with workspace_scope([world_a.workspace.pk]):
        members.membership_change_role(actor=owner_principal, membership=membership, role=Role.VIEWER)
    assert admin_key_client.get(world_a.url("audit-log/")).status_code == 403


def test_narrowed_key_role_cannot_exceed_owner(world_a):
    developer = world_a.client(Role.DEVELOPER)
    response = developer.post(world_a.url("api-keys/"), {"name": "x", "role": "admin"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_role"
    viewer_key = developer.post(world_a.url("api-keys/"), {"name": "ro", "role": "viewer"}, format="json").json()
    client = world_a.client(Role.DEVELOPER)
    client.logout()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {viewer_key['secret']}")
    assert client.post(world_a.url("api-keys/"), {"name": "y"}, format="json").status_code == 403


def test_removed_member_key_stops_working(world_a):
    client = world_a.client(Role.DEVELOPER, key=True)
    with rls_bypass():
        membership = world_a.workspace.memberships.get(user=world_a.users[Role.DEVELOPER])
    assert world_a.client(Role.OWNER).delete(world_a.url(f"members/{membership.pk}/")).status_code == 204
    assert client.get(world_a.url("members/")).status_code == 401


def test_last_used_is_written_at_most_once_per_window(world_a):
    client = world_a.client(Role.VIEWER, key=True)
    client.get(world_a.url("members/"))
    with rls_bypass():
        first = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.VIEWER]).last_used_at
    client.get(world_a.url("members/"))
    with rls_bypass():
        second = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.VIEWER]).last_used_at
    assert first is not None and first == second


def test_expiry_in_the_past_is_rejected(world_a):
    response = world_a.client(Role.OWNER).post(
        world_a.url("api-keys/"), {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_expiry"


def test_service_account_key_requires_manage_rights(world_a):
    developer = world_a.client(Role.DEVELOPER)
    response = developer.post(world_a.url(f"service-accounts/{world_a.agent.pk}/keys/"), {"name": "k"}, format="json")
    assert response.status_code == 403
    admin = world_a.client(Role.ADMIN)
    response = admin.post(world_a.url(f"service-accounts/{world_a.agent.pk}/keys/"), {"name": "k"}, format="json")
    assert response.status_code == 201 and response.json()["secret"].startswith("fd_sa_")


def test_rotate_with_out_of_range_grace_is_400(world_a):
    owner = world_a.client(Role.OWNER)
    created = owner.post(world_a.url("api-keys/"), {"name": "ci"}, format="json").json()
    response = owner.post(world_a.url(f"api-keys/{created['id']}/rotate/"), {"grace_seconds": 10**9}, format="json")
    assert response.status_code == 400


def test_invalid_input_raises_from_service(world_a):
    principal = principal_for_user(world_a.users[Role.OWNER], world_a.workspace)
    with pytest.raises(InvalidInput):
        api_keys.api_key_create_for_user(actor=principal, name="")


def test_unknown_role_for_a_key_is_invalid_input_not_a_crash(world_a):
    principal = principal_for_user(world_a.users[Role.OWNER], world_a.workspace)
    with pytest.raises(InvalidInput) as exc, workspace_scope([world_a.workspace.pk]):
        api_keys.api_key_create_for_user(actor=principal, name="x", role="superhero")
    assert exc.value.code == "invalid_role"
