"""Workspaces and team over REST: create, rename, roles, removal, leaving, the last Owner, seats,
service accounts and the audit log."""

from __future__ import annotations

import pytest

from accounts.models import AuditLogEntry, Membership, Role, Workspace
from accounts.services.members import seat_count
from core.tenancy import rls_bypass


def _membership(world, role):
    return Membership.objects.get(workspace=world.workspace, user=world.users[role])


def test_user_creates_more_workspaces_and_lists_them(world_a):
    client = world_a.client(Role.VIEWER)
    response = client.post("/api/v1/workspaces/", {"name": "Data Platform"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["slug"] == "data-platform"
    slugs = {w["slug"] for w in client.get("/api/v1/workspaces/").json()}
    assert slugs == {"acme", "data-platform"}
    assert Membership.objects.get(workspace__slug="data-platform").role == Role.OWNER


@pytest.mark.parametrize("slug", ["Bad Slug", "-x", "x-", "a--b", "api", "x" * 49])
def test_invalid_or_reserved_slug_is_400(world_a, slug):
    response = world_a.client(Role.OWNER).post("/api/v1/workspaces/", {"name": "X", "slug": slug}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_taken_slug_is_409_and_writes_nothing(world_a, world_b):
    before = Workspace.objects.count()
    response = world_a.client(Role.OWNER).post("/api/v1/workspaces/", {"name": "X", "slug": "globex"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "slug_taken"
    assert Workspace.objects.count() == before


def test_same_name_gets_a_distinct_slug(world_a):
    client = world_a.client(Role.OWNER)
    first = client.post("/api/v1/workspaces/", {"name": "Acme"}, format="json").json()
    assert first["slug"] != "acme" and first["slug"].startswith("acme")


def test_rename_and_change_slug_are_audited(world_a):
    admin = world_a.client(Role.ADMIN)
    response = admin.patch(world_a.url(), {"name": "Acme Corp", "slug": "acme-corp"}, format="json")
    assert response.status_code == 200 and response.json()["slug"] == "acme-corp"
    with rls_bypass():
        entry = AuditLogEntry.objects.for_workspace(world_a.workspace).filter(action="workspace.updated").get()
    assert entry.data == {"name": ["Acme", "Acme Corp"], "slug": ["acme", "acme-corp"]}


def test_only_owner_deletes_with_confirmation(world_a):
    assert world_a.client(Role.ADMIN).delete(world_a.url(), {"confirm_slug": "acme"}, format="json").status_code == 403
    owner = world_a.client(Role.OWNER)
    wrong = owner.delete(world_a.url(), {"confirm_slug": "nope"}, format="json")
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "confirmation_mismatch"
    assert owner.delete(world_a.url(), {"confirm_slug": "acme"}, format="json").status_code == 204
    assert not Workspace.objects.filter(slug="acme").exists()


def test_admin_changes_role_and_it_is_audited_with_ip(world_a):
    target = _membership(world_a, Role.VIEWER)
    response = world_a.client(Role.ADMIN).patch(
        world_a.url(f"members/{target.pk}/"), {"role": "developer"}, format="json", REMOTE_ADDR="203.0.113.9"
    )
    assert response.status_code == 200 and response.json()["role"] == "developer"
    with rls_bypass():
        entry = AuditLogEntry.objects.for_workspace(world_a.workspace).get(action="member.role_changed")
    assert entry.actor_label == world_a.users[Role.ADMIN].email
    assert entry.ip_address == "203.0.113.9" and entry.data == {"from": "viewer", "to": "developer"}


@pytest.mark.parametrize(
    ("actor", "target", "new_role", "status"),
    [
        (Role.ADMIN, Role.OWNER, "viewer", 403),  # only Owners touch Owners
        (Role.ADMIN, Role.VIEWER, "owner", 403),  # nobody grants above their own role
        (Role.DEVELOPER, Role.VIEWER, "developer", 403),
        (Role.VIEWER, Role.DEVELOPER, "viewer", 403),
        (Role.OWNER, Role.ADMIN, "owner", 200),
        (Role.ADMIN, Role.DEVELOPER, "agent", 400),
    ],
)
def test_role_change_rules(world_a, actor, target, new_role, status):
    response = world_a.client(actor).patch(
        world_a.url(f"members/{_membership(world_a, target).pk}/"), {"role": new_role}, format="json"
    )
    assert response.status_code == status, response.content


def test_workspace_always_keeps_an_owner(world_a):
    owner = world_a.client(Role.OWNER)
    me = _membership(world_a, Role.OWNER)
    demote = owner.patch(world_a.url(f"members/{me.pk}/"), {"role": "admin"}, format="json")
    assert demote.status_code == 409 and demote.json()["error"]["code"] == "last_owner"
    leave = owner.post(world_a.url("leave/"))
    assert leave.status_code == 409
    # With a second Owner, the first may leave.
    owner.patch(world_a.url(f"members/{_membership(world_a, Role.ADMIN).pk}/"), {"role": "owner"}, format="json")
    assert owner.post(world_a.url("leave/")).status_code == 204
    assert not Membership.objects.filter(pk=me.pk).exists()


def test_member_leaves_and_admin_removes(world_a):
    assert world_a.client(Role.VIEWER).post(world_a.url("leave/")).status_code == 204
    developer = _membership(world_a, Role.DEVELOPER)
    admin = _membership(world_a, Role.ADMIN)
    assert world_a.client(Role.DEVELOPER).delete(world_a.url(f"members/{admin.pk}/")).status_code == 403
    assert world_a.client(Role.ADMIN).delete(world_a.url(f"members/{developer.pk}/")).status_code == 204
    with rls_bypass():
        actions = set(AuditLogEntry.objects.for_workspace(world_a.workspace).values_list("action", flat=True))
    assert {"member.left", "member.removed"} <= actions


def test_seat_count_counts_members_and_pending_invitations(world_a):
    assert seat_count(world_a.workspace) == 4
    world_a.client(Role.ADMIN).post(
        world_a.url("invitations/"), {"email": "n@example.com", "role": "viewer"}, format="json"
    )
    assert seat_count(world_a.workspace) == 5


def test_service_account_lifecycle(world_a):
    admin = world_a.client(Role.ADMIN)
    created = admin.post(world_a.url("service-accounts/"), {"name": "prod-agent", "role": "agent"}, format="json")
    assert created.status_code == 201
    account = created.json()
    dup = admin.post(world_a.url("service-accounts/"), {"name": "prod-agent", "role": "agent"}, format="json")
    assert dup.status_code == 409
    key = admin.post(world_a.url(f"service-accounts/{account['id']}/keys/"), {"name": "k8s"}, format="json").json()
    assert key["secret"].startswith("fd_sa_")
    renamed = admin.patch(world_a.url(f"service-accounts/{account['id']}/"), {"role": "viewer"}, format="json")
    assert renamed.json()["role"] == "viewer"
    assert admin.delete(world_a.url(f"service-accounts/{account['id']}/")).status_code == 204
    from rest_framework.test import APIClient

    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {key['secret']}")
    assert agent.get(world_a.url("members/")).status_code == 401
    names = {a["name"] for a in admin.get(world_a.url("service-accounts/")).json()}
    assert "prod-agent" not in names


def test_service_account_cannot_be_owner(world_a):
    response = world_a.client(Role.OWNER).post(
        world_a.url("service-accounts/"), {"name": "x", "role": "owner"}, format="json"
    )
    assert response.status_code == 400


def test_agent_role_can_do_nothing_of_the_team(world_a):
    agent = world_a.client(Role.AGENT)
    assert agent.get(world_a.url("members/")).status_code == 403
    assert agent.get(world_a.url("audit-log/")).status_code == 403
    assert agent.post(world_a.url("api-keys/"), {"name": "x"}, format="json").status_code == 403
    invitation = {"email": "a@b.co", "role": "viewer"}
    assert agent.post(world_a.url("invitations/"), invitation, format="json").status_code == 403


def test_audit_log_is_for_owners_and_admins_and_paginates(world_a):
    admin = world_a.client(Role.ADMIN)
    for i in range(5):
        admin.post(world_a.url("invitations/"), {"email": f"p{i}@example.com", "role": "viewer"}, format="json")
    assert world_a.client(Role.DEVELOPER).get(world_a.url("audit-log/")).status_code == 403
    page = admin.get(world_a.url("audit-log/") + "?limit=3").json()
    assert len(page["results"]) == 3 and page["next"]
    rest = admin.get(page["next"]).json()
    assert len(rest["results"]) == 2
    seen = [e["target_label"] for e in page["results"] + rest["results"]]
    assert seen == [f"invitation for p{i}@example.com" for i in reversed(range(5))]


def test_api_keys_listing_own_vs_all(world_a):
    own = world_a.client(Role.DEVELOPER).get(world_a.url("api-keys/")).json()["results"]
    assert {k["owner"] for k in own} == {world_a.users[Role.DEVELOPER].email}
    everything = world_a.client(Role.ADMIN).get(world_a.url("api-keys/")).json()["results"]
    assert len(everything) == 5


def test_developer_cannot_revoke_someone_elses_key(world_a):
    admin_keys = world_a.client(Role.ADMIN).get(world_a.url("api-keys/")).json()["results"]
    viewer_key = next(k for k in admin_keys if k["owner"] == world_a.users[Role.VIEWER].email)
    assert world_a.client(Role.DEVELOPER).delete(world_a.url(f"api-keys/{viewer_key['id']}/")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_deleting_a_workspace_commits_and_removes_its_tenant_rows():
    from accounts.models import ApiKey, ServiceAccount
    from tests.conftest import build_world

    world = build_world("doomed")
    survivor = build_world("survivor")
    response = world.client(Role.OWNER).delete(world.url(), {"confirm_slug": "doomed"}, format="json")
    assert response.status_code == 204  # committed: deferred foreign keys were checked
    with rls_bypass():
        assert not ApiKey.objects.for_workspace(world.workspace).exists()
        assert not ServiceAccount.objects.for_workspace(world.workspace).exists()
        assert ApiKey.objects.for_workspace(survivor.workspace).count() == 5
