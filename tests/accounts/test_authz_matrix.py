"""Role × action matrix: every action the system knows, for every role, decided by authorize()."""

from __future__ import annotations

import pytest

from accounts.authz import ALL_ACTIONS, NotFound, PermissionDenied, Principal, authorize, can, can_grant_role
from accounts.models import Role, ServiceAccount, Workspace
from accounts.services.object_permissions import object_permission_grant
from core.tenancy import workspace_scope

O, A, D, V, G = "owner", "admin", "developer", "viewer", "agent"  # noqa: E741 (short names keep the matrix readable)
# The policy, written out by hand: which roles may do each action.
EXPECTED: dict[str, set[str]] = {
    "workspace:read": {O, A, D, V},
    "workspace:update": {O, A},
    "workspace:delete": {O},
    "billing:manage": {O},
    "billing:read": {O, A, D, V},
    "member:read": {O, A, D, V},
    "member:update_role": {O, A},
    "member:remove": {O, A},
    "invitation:read": {O, A},
    "invitation:create": {O, A},
    "invitation:revoke": {O, A},
    "service_account:read": {O, A},
    "service_account:create": {O, A},
    "service_account:update": {O, A},
    "service_account:delete": {O, A},
    "service_account:manage_keys": {O, A},
    "api_key:create_own": {O, A, D},
    "api_key:read_all": {O, A},
    "api_key:revoke_any": {O, A},
    "audit_log:read": {O, A},
    "object_permission:manage": {O, A},
    "project:read": {O, A, D, V},
    "project:write": {O, A, D},
    "flow:register": {O, A, D},
    "flow_run:create": {O, A, D},
    "flow_run:update": {O, A, D},
    "log:read": {O, A, D, V},
    "agent:register": {O, A, D, G},
    "agent:heartbeat": {O, A, D, G},
    "flow_run:claim": {O, A, D, G},
    "flow_run:report_state": {O, A, D, G},
    "log:write": {O, A, D, G},
    "sla:read": {O, A, D, V},
    "sla:manage": {O, A, D},
    "incident:update": {O, A, D},
    "notification_channel:read": {O, A, D, V},
    "notification_channel:manage": {O, A},
}
ROLES = [O, A, D, V, G]


def test_matrix_covers_every_action():
    assert set(EXPECTED) == set(ALL_ACTIONS)


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_role_action(role, action):
    workspace = Workspace(name="w", slug="w")
    principal = Principal(workspace=workspace, role=role)
    if role in EXPECTED[action]:
        authorize(principal, action, workspace)
    else:
        with pytest.raises(PermissionDenied):
            authorize(principal, action, workspace)


def test_agent_role_is_exactly_the_narrow_set():
    assert {a for a, roles in EXPECTED.items() if G in roles} == {
        "agent:register", "agent:heartbeat", "flow_run:claim", "flow_run:report_state", "log:write",
    }


def test_object_of_another_workspace_is_not_found_for_every_action():
    mine, theirs = Workspace(name="a", slug="a"), Workspace(name="b", slug="b")
    other_object = ServiceAccount(workspace=theirs, name="x", role=G)
    for action in ALL_ACTIONS:
        with pytest.raises(NotFound):
            authorize(Principal(workspace=mine, role=O), action, other_object)


def test_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError):
        authorize(Principal(workspace=Workspace(name="a", slug="a"), role=O), "nope:nope")


@pytest.mark.parametrize(
    ("granter", "role", "allowed"),
    [(O, O, True), (A, O, False), (A, A, True), (A, G, True), (D, V, True), (D, A, False), (V, D, False)],
)
def test_nobody_grants_a_role_above_their_own(granter, role, allowed):
    assert can_grant_role(granter, role) is allowed


def test_guardian_grant_widens_one_object_for_one_member(world_a):
    developer = Principal(workspace=world_a.workspace, role=D, user=world_a.users[D])
    admin = Principal(workspace=world_a.workspace, role=A, user=world_a.users[A])
    other = ServiceAccount.objects.unscoped()
    with workspace_scope([world_a.workspace.pk]):
        second = other.create(workspace=world_a.workspace, name="ci", role=V)
        assert not can(developer, "service_account:manage_keys", world_a.agent)
        object_permission_grant(actor=admin, obj=world_a.agent, user=world_a.users[D], level="manage")
        assert can(developer, "service_account:manage_keys", world_a.agent)
        assert not can(developer, "service_account:manage_keys", second)


def test_restricted_object_is_hidden_unless_shared(world_a):
    viewer = Principal(workspace=world_a.workspace, role=V, user=world_a.users[V])
    admin = Principal(workspace=world_a.workspace, role=A, user=world_a.users[A])
    with workspace_scope([world_a.workspace.pk]):
        secret = ServiceAccount.objects.unscoped().create(
            workspace=world_a.workspace, name="prod-deployer", role=D, is_restricted=True
        )
        with pytest.raises(NotFound):
            authorize(viewer, "project:read", secret)
        authorize(admin, "service_account:read", secret)
        object_permission_grant(actor=admin, obj=secret, user=world_a.users[V], level="view")
        authorize(viewer, "service_account:read", secret)
        with pytest.raises(PermissionDenied):
            authorize(viewer, "service_account:manage_keys", secret)


def test_restricted_account_is_hidden_over_rest_until_granted(world_a):
    admin = world_a.client(Role.ADMIN)
    restricted = {"name": "deployer", "role": "developer", "is_restricted": True}
    created = admin.post(world_a.url("service-accounts/"), restricted, format="json")
    assert created.status_code == 201
    account_id = created.json()["id"]
    developer = world_a.client(Role.DEVELOPER)
    assert developer.get(world_a.url(f"service-accounts/{account_id}/")).status_code == 404
    grant = admin.post(world_a.url(f"service-accounts/{account_id}/permissions/"),
                       {"user_id": str(world_a.users[Role.DEVELOPER].pk), "level": "manage"}, format="json")
    assert grant.status_code == 204
    assert developer.get(world_a.url(f"service-accounts/{account_id}/")).status_code == 200
    key = developer.post(world_a.url(f"service-accounts/{account_id}/keys/"), {"name": "deploy"}, format="json")
    assert key.status_code == 201
    grants = admin.get(world_a.url(f"service-accounts/{account_id}/permissions/")).json()
    assert grants == [{"user_id": str(world_a.users[Role.DEVELOPER].pk), "email": world_a.users[Role.DEVELOPER].email,
                       "permissions": ["manage_serviceaccount"]}]
    revoke = admin.delete(world_a.url(f"service-accounts/{account_id}/permissions/"),
                          {"user_id": str(world_a.users[Role.DEVELOPER].pk), "level": "manage"}, format="json")
    assert revoke.status_code == 204
    assert developer.get(world_a.url(f"service-accounts/{account_id}/")).status_code == 404


def test_developer_lists_only_service_accounts_shared_with_them(world_a):
    admin = world_a.client(Role.ADMIN)
    shared = admin.post(world_a.url("service-accounts/"), {"name": "shared", "role": "viewer"}, format="json").json()
    admin.post(
        world_a.url("service-accounts/"), {"name": "hidden", "role": "viewer", "is_restricted": True}, format="json"
    )
    admin.post(world_a.url(f"service-accounts/{shared['id']}/permissions/"),
               {"user_id": str(world_a.users[Role.DEVELOPER].pk), "level": "view"}, format="json")
    names = [a["name"] for a in world_a.client(Role.DEVELOPER).get(world_a.url("service-accounts/")).json()]
    assert names == ["shared"]
    assert {a["name"] for a in admin.get(world_a.url("service-accounts/")).json()} == {"agent", "shared", "hidden"}


def test_listing_costs_a_constant_number_of_queries(world_a, django_assert_max_num_queries):
    admin = world_a.client(Role.ADMIN)
    for i in range(10):
        admin.post(world_a.url("service-accounts/"), {"name": f"sa-{i}", "role": "agent"}, format="json")
        world_a.client(Role.OWNER).post(
            world_a.url("invitations/"), {"email": f"i{i}@example.com", "role": "viewer"}, format="json"
        )
    for path in ("service-accounts/", "members/", "invitations/", "api-keys/", "audit-log/"):
        with django_assert_max_num_queries(12):
            assert admin.get(world_a.url(path)).status_code == 200
