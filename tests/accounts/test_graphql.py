"""The accounts GraphQL API at /graphql: every query and mutation of the web app's contract, role
restrictions, and bad input answered with error codes (never a 500).

The helpers at the top are shared by the other ``test_graphql_*`` modules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from accounts.authz import principal_for_user
from accounts.models import ApiKey, AuditLogEntry, Invitation, Membership, Role, ServiceAccount, User, Workspace
from accounts.services import invitations
from accounts.services.audit import audit_record
from core.tenancy import rls_bypass, workspace_scope
from tests.factories import ServiceAccountFactory, UserFactory

GRAPHQL_URL = "/graphql"


# --- Helpers (shared with the other test_graphql_* modules) --------------------------------------


def login(user: User | None = None, **client_kwargs: Any) -> Client:
    """A browser-like client signed in with the session (or anonymous with ``user=None``)."""
    client = Client(**client_kwargs)
    if user is not None:
        client.force_login(user)
    return client


def gql(client: Client, query: str, variables: dict | None = None, *, status: int = 200) -> dict:
    response = client.post(GRAPHQL_URL, {"query": query, "variables": variables or {}}, content_type="application/json")
    assert response.status_code == status, response.content
    return response.json()


def ok(body: dict) -> dict:
    """The data of a response that must carry no GraphQL errors."""
    assert "errors" not in body, body["errors"]
    return body["data"]


def error_codes(body: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


def invite(world, email: str = "new@example.com", role: str = Role.DEVELOPER) -> tuple[Invitation, str]:  # type: ignore[no-untyped-def]
    """An invitation made by the workspace's Admin through the service; returns it and its token."""
    actor = principal_for_user(world.users[Role.ADMIN], world.workspace)
    with workspace_scope([world.workspace.pk]):
        return invitations.invitation_create(actor=actor, email=email, role=role)


def membership(world, role: str) -> Membership:  # type: ignore[no-untyped-def]
    return Membership.objects.get(workspace=world.workspace, user=world.users[role])


def audit_actions(workspace: Workspace) -> list[str]:
    with rls_bypass():
        entries = AuditLogEntry.objects.for_workspace(workspace).order_by("-created_at")
        return list(entries.values_list("action", flat=True))


# --- Queries -------------------------------------------------------------------------------------

WORKSPACE = """
query($slug: String!) {
  workspace(slug: $slug) { id name slug createdAt viewerRole }
}
"""


def test_viewer_is_the_signed_in_user(world_a):
    user = world_a.users[Role.DEVELOPER]
    data = ok(gql(login(user), "{ viewer { id email fullName } }"))
    assert data["viewer"] == {"id": str(user.pk), "email": user.email, "fullName": user.full_name}


def test_anonymous_reads_are_null_or_empty(world_a):
    body = gql(login(), '{ viewer { email } workspaces { slug } workspace(slug: "acme") { slug } }')
    assert ok(body) == {"viewer": None, "workspaces": [], "workspace": None}


def test_workspaces_are_the_users_memberships_with_their_role(world_a, world_b):
    user = world_a.users[Role.ADMIN]
    Membership.objects.create(workspace=world_b.workspace, user=user, role=Role.VIEWER)
    data = ok(gql(login(user), "{ workspaces { slug name viewerRole } }"))
    assert data["workspaces"] == [
        {"slug": "acme", "name": "Acme", "viewerRole": "admin"},
        {"slug": "globex", "name": "Globex", "viewerRole": "viewer"},
    ]


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER])
def test_workspace_by_slug_for_each_role(world_a, role):
    data = ok(gql(login(world_a.users[role]), WORKSPACE, {"slug": "acme"}))
    ws = world_a.workspace
    assert data["workspace"] == {
        "id": str(ws.pk), "name": "Acme", "slug": "acme", "createdAt": ws.created_at.isoformat(), "viewerRole": role,
    }


def test_unknown_slug_is_null_without_error(world_a):
    body = gql(login(world_a.users[Role.OWNER]), WORKSPACE, {"slug": "nope"})
    assert ok(body) == {"workspace": None}


def test_members_list_every_member_with_their_user(world_a):
    query = '{ workspace(slug: "acme") { members { id role createdAt user { id email fullName } } } }'
    members = ok(gql(login(world_a.users[Role.VIEWER]), query))["workspace"]["members"]
    assert [(m["role"], m["user"]["email"]) for m in members] == [
        (role, f"{role}@acme.example.com") for role in ("owner", "admin", "developer", "viewer")
    ]
    owner = membership(world_a, Role.OWNER)
    assert members[0]["id"] == str(owner.pk) and members[0]["user"]["id"] == str(owner.user_id)


def test_admin_lists_invitations_with_every_field(world_a):
    invitation, _ = invite(world_a, "new@example.com", Role.VIEWER)
    query = """{ workspace(slug: "acme") { invitations {
        id email role status invitedBy createdAt expiresAt sendCount } } }"""
    listed = ok(gql(login(world_a.users[Role.ADMIN]), query))["workspace"]["invitations"]
    assert listed == [{
        "id": str(invitation.pk), "email": "new@example.com", "role": "viewer", "status": "pending",
        "invitedBy": "admin@acme.example.com", "createdAt": invitation.created_at.isoformat(),
        "expiresAt": invitation.expires_at.isoformat(), "sendCount": 1,
    }]


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
@pytest.mark.parametrize("field", ["invitations { id }", "auditLog { edges { node { id } } }"])
def test_a_list_the_role_may_not_read_fails_on_that_field_only(world_a, role, field):
    query = f'{{ workspace(slug: "acme") {{ slug members {{ role }} {field} }} }}'
    body = gql(login(world_a.users[role]), query)
    field_name = field.split(" ")[0]
    assert error_codes(body) == ["permission_denied"]
    assert body["errors"][0]["path"] == ["workspace", field_name]
    assert body["data"]["workspace"]["slug"] == "acme" and len(body["data"]["workspace"]["members"]) == 4
    assert body["data"]["workspace"][field_name] is None


def test_a_refused_list_inside_the_workspaces_list_is_null_for_that_workspace_only(world_a, world_b):
    user = world_a.users[Role.VIEWER]
    Membership.objects.create(workspace=world_b.workspace, user=user, role=Role.ADMIN)
    invite(world_b, "someone@example.com")
    body = gql(login(user), "{ workspaces { slug invitations { email } } }")
    assert error_codes(body) == ["permission_denied"] and body["errors"][0]["path"] == ["workspaces", 0, "invitations"]
    assert body["data"]["workspaces"] == [
        {"slug": "acme", "invitations": None},
        {"slug": "globex", "invitations": [{"email": "someone@example.com"}]},
    ]


def test_service_accounts_for_admins_and_only_shared_restricted_ones_below(world_a):
    restricted = ServiceAccountFactory(workspace=world_a.workspace, name="deployer", role=Role.DEVELOPER,
                                       description="CI", is_restricted=True)
    assign_perm("view_serviceaccount", world_a.users[Role.DEVELOPER], restricted)
    query = '{ workspace(slug: "acme") { serviceAccounts { id name description role isRestricted createdAt } } }'
    as_admin = ok(gql(login(world_a.users[Role.ADMIN]), query))["workspace"]["serviceAccounts"]
    as_developer = ok(gql(login(world_a.users[Role.DEVELOPER]), query))["workspace"]["serviceAccounts"]
    as_viewer = ok(gql(login(world_a.users[Role.VIEWER]), query))["workspace"]["serviceAccounts"]
    assert [a["name"] for a in as_admin] == ["agent", "deployer"]
    assert as_developer == [{
        "id": str(restricted.pk), "name": "deployer", "description": "CI", "role": "developer",
        "isRestricted": True, "createdAt": restricted.created_at.isoformat(),
    }]
    assert as_viewer == []


def test_api_keys_admin_sees_every_key_and_others_their_own(world_a):
    query = """{ workspace(slug: "acme") { apiKeys {
        id name kind owner lookupPrefix role createdAt expiresAt lastUsedAt revokedAt } } }"""
    as_admin = ok(gql(login(world_a.users[Role.ADMIN]), query))["workspace"]["apiKeys"]
    as_developer = ok(gql(login(world_a.users[Role.DEVELOPER]), query))["workspace"]["apiKeys"]
    assert sorted(k["owner"] for k in as_admin) == sorted([*(f"{r}@acme.example.com" for r in
                                                              ("owner", "admin", "developer", "viewer")), "agent"])
    with rls_bypass():
        key = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.DEVELOPER])
    assert as_developer == [{
        "id": str(key.pk), "name": "test key", "kind": "user", "owner": "developer@acme.example.com",
        "lookupPrefix": key.lookup_prefix, "role": None, "createdAt": key.created_at.isoformat(),
        "expiresAt": None, "lastUsedAt": None, "revokedAt": None,
    }]
    agent_key = next(k for k in as_admin if k["owner"] == "agent")
    assert agent_key["kind"] == "service_account"


AUDIT_LOG = """
query($first: Int, $after: String) {
  workspace(slug: "acme") {
    auditLog(first: $first, after: $after) {
      edges { cursor node { id createdAt actor action targetType targetLabel data ipAddress } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


def test_audit_log_is_newest_first_and_pages_with_cursors(world_a):
    actor = principal_for_user(world_a.users[Role.OWNER], world_a.workspace, "10.0.0.7")
    with workspace_scope([world_a.workspace.pk]):
        for n in range(5):
            audit_record(workspace=world_a.workspace, action=f"test.event{n}", target=world_a.agent, actor=actor,
                         data={"n": n})
    client = login(world_a.users[Role.ADMIN])
    first = ok(gql(client, AUDIT_LOG, {"first": 2}))["workspace"]["auditLog"]
    second = ok(gql(client, AUDIT_LOG, {"first": 2, "after": first["pageInfo"]["endCursor"]}))["workspace"]["auditLog"]
    last = ok(gql(client, AUDIT_LOG, {"first": 2, "after": second["pageInfo"]["endCursor"]}))["workspace"]["auditLog"]
    actions = [e["node"]["action"] for page in (first, second, last) for e in page["edges"]]
    assert actions == ["test.event4", "test.event3", "test.event2", "test.event1", "test.event0"]
    assert [first["pageInfo"]["hasNextPage"], second["pageInfo"]["hasNextPage"], last["pageInfo"]["hasNextPage"]] == [
        True, True, False,
    ]
    node = first["edges"][0]["node"]
    assert node["actor"] == "owner@acme.example.com" and node["targetType"] == "serviceaccount"
    assert node["targetLabel"] == "agent" and node["data"] == {"n": 4} and node["ipAddress"] == "10.0.0.7"


def test_audit_log_defaults_to_fifty_newest(world_a):
    actor = principal_for_user(world_a.users[Role.OWNER], world_a.workspace)
    with workspace_scope([world_a.workspace.pk]):
        for n in range(51):
            audit_record(workspace=world_a.workspace, action=f"e{n}", target=world_a.agent, actor=actor)
    page = ok(gql(login(world_a.users[Role.OWNER]), AUDIT_LOG))["workspace"]["auditLog"]
    assert len(page["edges"]) == 50 and page["pageInfo"]["hasNextPage"] is True
    assert page["edges"][0]["node"]["action"] == "e50"


@pytest.mark.parametrize(("variables", "code"), [
    ({"first": -1}, "invalid_argument"),
    ({"first": 101}, "invalid_argument"),
    ({"after": "not a cursor"}, "invalid_cursor"),
    ({"after": "bm90fGEgY3Vyc29y"}, "invalid_cursor"),  # base64 of "not|a cursor"
])
def test_audit_log_bad_paging_is_an_error_on_the_field(world_a, variables, code):
    body = gql(login(world_a.users[Role.OWNER]), AUDIT_LOG, variables)
    assert error_codes(body) == [code]
    assert body["data"]["workspace"]["auditLog"] is None


INVITATION_PREVIEW = """
query($token: String!) {
  invitation(token: $token) { workspaceName workspaceSlug email role invitedBy status expiresAt }
}
"""


def test_invitation_preview_by_token_needs_no_sign_in(world_a):
    invitation, token = invite(world_a, "new@example.com", Role.VIEWER)
    data = ok(gql(login(), INVITATION_PREVIEW, {"token": token}))
    assert data["invitation"] == {
        "workspaceName": "Acme", "workspaceSlug": "acme", "email": "new@example.com", "role": "viewer",
        "invitedBy": "admin@acme.example.com", "status": "pending", "expiresAt": invitation.expires_at.isoformat(),
    }


@pytest.mark.parametrize("token", ["unknown-token", "x" * 500])
def test_unknown_invitation_token_is_null(world_a, token):
    assert ok(gql(login(), INVITATION_PREVIEW, {"token": token})) == {"invitation": None}


def test_a_nul_in_an_invitation_token_is_a_400(world_a):
    """NUL cannot be stored or looked up: refused before anything runs (core.text_guard)."""
    assert error_codes(gql(login(), INVITATION_PREVIEW, {"token": "bad\x00token"}, status=400)) == ["invalid_text"]


def test_invitation_preview_is_rate_limited_per_ip(world_a, settings, one_rate_window):
    settings.INVITATION_ACCEPT_LIMIT_PER_IP = 2
    client = login()
    for _ in range(2):
        ok(gql(client, INVITATION_PREVIEW, {"token": "guess"}))
    body = gql(client, INVITATION_PREVIEW, {"token": "guess"})
    assert error_codes(body) == ["rate_limited"] and body["data"]["invitation"] is None


# --- Mutations: workspaces -----------------------------------------------------------------------

CREATE_WORKSPACE = """
mutation($name: String!, $slug: String) {
  createWorkspace(name: $name, slug: $slug) {
    workspace { slug name viewerRole members { role user { email } } auditLog { edges { node { action } } } }
    errors { code message field }
  }
}
"""


def test_create_workspace_makes_you_owner_and_reads_it_back(world_a):
    user = world_a.users[Role.VIEWER]
    payload = ok(gql(login(user), CREATE_WORKSPACE, {"name": "Data Platform"}))["createWorkspace"]
    assert payload["errors"] == []
    workspace = payload["workspace"]
    assert workspace["slug"] == "data-platform" and workspace["viewerRole"] == "owner"
    assert workspace["members"] == [{"role": "owner", "user": {"email": user.email}}]
    # Row-level security was widened to the new workspace within the same request.
    assert [e["node"]["action"] for e in workspace["auditLog"]["edges"]] == ["workspace.created"]
    assert Membership.objects.get(workspace__slug="data-platform").user == user


@pytest.mark.parametrize(("slug", "code"), [("globex", "slug_taken"), ("Bad Slug", "invalid_slug"),
                                           ("api", "invalid_slug"), ("x" * 49, "invalid_slug")])
def test_create_workspace_with_a_bad_slug_is_an_error_and_writes_nothing(world_a, world_b, slug, code):
    before = Workspace.objects.count()
    body = gql(login(world_a.users[Role.OWNER]), CREATE_WORKSPACE, {"name": "X", "slug": slug})
    payload = ok(body)["createWorkspace"]
    assert payload["workspace"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, "slug")]
    assert Workspace.objects.count() == before


def test_create_workspace_needs_a_name(world_a):
    payload = ok(gql(login(world_a.users[Role.OWNER]), CREATE_WORKSPACE, {"name": "  "}))["createWorkspace"]
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("name_required", "name")]


UPDATE_WORKSPACE = """
mutation($workspace: String!, $name: String, $slug: String) {
  updateWorkspace(workspace: $workspace, name: $name, slug: $slug) {
    workspace { name slug } errors { code field }
  }
}
"""


def test_admin_renames_workspace_and_changes_slug(world_a):
    variables = {"workspace": "acme", "name": "Acme Corp", "slug": "acme-corp"}
    payload = ok(gql(login(world_a.users[Role.ADMIN]), UPDATE_WORKSPACE, variables))["updateWorkspace"]
    assert payload == {"workspace": {"name": "Acme Corp", "slug": "acme-corp"}, "errors": []}
    world_a.workspace.refresh_from_db()
    assert (world_a.workspace.name, world_a.workspace.slug) == ("Acme Corp", "acme-corp")
    assert audit_actions(world_a.workspace)[0] == "workspace.updated"


def test_developer_cannot_update_workspace(world_a):
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), UPDATE_WORKSPACE, {"workspace": "acme", "name": "X"}))
    assert payload["updateWorkspace"] == {"workspace": None, "errors": [{"code": "permission_denied", "field": None}]}
    world_a.workspace.refresh_from_db()
    assert world_a.workspace.name == "Acme"


def test_update_workspace_to_a_taken_slug(world_a, world_b):
    payload = ok(gql(login(world_a.users[Role.OWNER]), UPDATE_WORKSPACE, {"workspace": "acme", "slug": "globex"}))
    assert payload["updateWorkspace"]["errors"] == [{"code": "slug_taken", "field": "slug"}]


# --- Mutations: invitations ----------------------------------------------------------------------

INVITE = """
mutation($workspace: String!, $email: String!, $role: String!) {
  inviteMember(workspace: $workspace, email: $email, role: $role) {
    invitation { id email role status invitedBy sendCount } errors { code message field }
  }
}
"""


def test_admin_invites_by_email_and_the_link_is_mailed(world_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        body = gql(
            login(world_a.users[Role.ADMIN]),
            INVITE,
            {"workspace": "acme", "email": "New@Example.com", "role": "developer"},
        )
    payload = ok(body)["inviteMember"]
    assert payload["errors"] == []
    assert {k: v for k, v in payload["invitation"].items() if k != "id"} == {
        "email": "new@example.com", "role": "developer", "status": "pending",
        "invitedBy": "admin@acme.example.com", "sendCount": 1,
    }
    assert mail.outbox[-1].to == ["new@example.com"] and "/invitations/" in mail.outbox[-1].body
    with rls_bypass():
        assert Invitation.objects.for_workspace(world_a.workspace).filter(pk=payload["invitation"]["id"]).exists()


@pytest.mark.parametrize(("role", "as_role", "code", "field"), [
    ("viewer", Role.VIEWER, "permission_denied", None),
    ("viewer", Role.DEVELOPER, "permission_denied", None),
    ("owner", Role.ADMIN, "permission_denied", None),  # never above your own role
    ("superhero", Role.ADMIN, "invalid_role", "role"),
    ("agent", Role.OWNER, "invalid_role", "role"),
])
def test_invite_refusals(world_a, role, as_role, code, field):
    body = gql(login(world_a.users[as_role]), INVITE, {"workspace": "acme", "email": "x@example.com", "role": role})
    payload = ok(body)["inviteMember"]
    assert payload["invitation"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)]
    with rls_bypass():
        assert not Invitation.objects.for_workspace(world_a.workspace).exists()


@pytest.mark.parametrize("email", ["not-an-email", "", "a@b", ("x" * 250) + "@example.com"])
def test_invite_with_an_invalid_email(world_a, email):
    body = gql(login(world_a.users[Role.ADMIN]), INVITE, {"workspace": "acme", "email": email, "role": "viewer"})
    assert [(e["code"], e["field"]) for e in ok(body)["inviteMember"]["errors"]] == [("invalid_email", "email")]


def test_invite_an_existing_member_or_twice(world_a):
    client = login(world_a.users[Role.ADMIN])
    member = gql(client, INVITE, {"workspace": "acme", "email": "viewer@acme.example.com", "role": "viewer"})
    ok(gql(client, INVITE, {"workspace": "acme", "email": "x@example.com", "role": "viewer"}))
    twice = gql(client, INVITE, {"workspace": "acme", "email": "x@example.com", "role": "viewer"})
    assert [e["code"] for e in ok(member)["inviteMember"]["errors"]] == ["already_member"]
    assert [e["code"] for e in ok(twice)["inviteMember"]["errors"]] == ["already_invited"]


REVOKE_INVITATION = """
mutation($workspace: String!, $id: ID!) {
  revokeInvitation(workspace: $workspace, id: $id) { invitation { id status } errors { code } }
}
"""
RESEND_INVITATION = """
mutation($workspace: String!, $id: ID!) {
  resendInvitation(workspace: $workspace, id: $id) { invitation { id status sendCount } errors { code } }
}
"""


def test_admin_revokes_an_invitation_once(world_a):
    invitation, _ = invite(world_a)
    client = login(world_a.users[Role.ADMIN])
    first = ok(gql(client, REVOKE_INVITATION, {"workspace": "acme", "id": str(invitation.pk)}))["revokeInvitation"]
    again = ok(gql(client, REVOKE_INVITATION, {"workspace": "acme", "id": str(invitation.pk)}))["revokeInvitation"]
    assert first == {"invitation": {"id": str(invitation.pk), "status": "revoked"}, "errors": []}
    assert again == {"invitation": None, "errors": [{"code": "invitation_revoked"}]}


def test_resend_sends_a_fresh_link_and_the_old_one_stops_working(world_a, django_capture_on_commit_callbacks):
    invitation, old_token = invite(world_a)
    with django_capture_on_commit_callbacks(execute=True):
        body = gql(login(world_a.users[Role.ADMIN]), RESEND_INVITATION, {"workspace": "acme", "id": str(invitation.pk)})
    assert ok(body)["resendInvitation"] == {
        "invitation": {"id": str(invitation.pk), "status": "pending", "sendCount": 2}, "errors": [],
    }
    assert mail.outbox[-1].to == ["new@example.com"]
    assert ok(gql(login(), INVITATION_PREVIEW, {"token": old_token})) == {"invitation": None}


@pytest.mark.parametrize("mutation", [REVOKE_INVITATION, RESEND_INVITATION])
def test_developer_cannot_revoke_or_resend(world_a, mutation):
    invitation, _ = invite(world_a)
    body = gql(login(world_a.users[Role.DEVELOPER]), mutation, {"workspace": "acme", "id": str(invitation.pk)})
    assert [e["code"] for e in next(iter(ok(body).values()))["errors"]] == ["permission_denied"]


ACCEPT = """
mutation($token: String!) {
  acceptInvitation(token: $token) {
    workspace { slug viewerRole serviceAccounts { name } } errors { code message }
  }
}
"""


def test_invitee_accepts_joins_with_the_role_and_reads_the_workspace(world_a):
    user = UserFactory(email="new@example.com")
    _, token = invite(world_a, "new@example.com", Role.ADMIN)
    payload = ok(gql(login(user), ACCEPT, {"token": token}))["acceptInvitation"]
    # The new workspace's rows are readable in the same request (row-level security was widened).
    assert payload == {"workspace": {"slug": "acme", "viewerRole": "admin", "serviceAccounts": [{"name": "agent"}]},
                       "errors": []}
    assert Membership.objects.get(workspace=world_a.workspace, user=user).role == Role.ADMIN
    assert audit_actions(world_a.workspace)[0] == "invitation.accepted"


def test_accept_refusals(world_a):
    invitee = UserFactory(email="new@example.com")
    someone_else = UserFactory(email="other@example.com")
    _, token = invite(world_a, "new@example.com", Role.VIEWER)
    mismatch = ok(gql(login(someone_else), ACCEPT, {"token": token}))["acceptInvitation"]
    ok(gql(login(invitee), ACCEPT, {"token": token}))
    used = ok(gql(login(invitee), ACCEPT, {"token": token}))["acceptInvitation"]
    unknown = ok(gql(login(invitee), ACCEPT, {"token": "nope"}))["acceptInvitation"]
    assert [e["code"] for e in mismatch["errors"]] == ["invitation_email_mismatch"]
    assert [e["code"] for e in used["errors"]] == ["invitation_used"]
    assert [e["code"] for e in unknown["errors"]] == ["not_found"]
    assert not Membership.objects.filter(user=someone_else).exists()


def test_accepting_is_rate_limited_per_ip(world_a, settings, one_rate_window):
    settings.INVITATION_ACCEPT_LIMIT_PER_IP = 1
    client = login(world_a.users[Role.VIEWER])
    first = ok(gql(client, ACCEPT, {"token": "guess-1"}))["acceptInvitation"]
    second = ok(gql(client, ACCEPT, {"token": "guess-2"}))["acceptInvitation"]
    assert [e["code"] for e in first["errors"]] == ["not_found"]
    assert [e["code"] for e in second["errors"]] == ["rate_limited"]


# --- Mutations: members --------------------------------------------------------------------------

CHANGE_ROLE = """
mutation($workspace: String!, $memberId: ID!, $role: String!) {
  changeMemberRole(workspace: $workspace, memberId: $memberId, role: $role) {
    member { id role user { email } } errors { code field }
  }
}
"""
REMOVE_MEMBER = """
mutation($workspace: String!, $memberId: ID!) {
  removeMember(workspace: $workspace, memberId: $memberId) { ok errors { code } }
}
"""
LEAVE = "mutation($workspace: String!) { leaveWorkspace(workspace: $workspace) { ok errors { code } } }"


def test_owner_changes_a_members_role(world_a):
    target = membership(world_a, Role.DEVELOPER)
    body = gql(login(world_a.users[Role.OWNER]), CHANGE_ROLE,
               {"workspace": "acme", "memberId": str(target.pk), "role": "admin"})
    assert ok(body)["changeMemberRole"] == {
        "member": {"id": str(target.pk), "role": "admin", "user": {"email": "developer@acme.example.com"}},
        "errors": [],
    }
    target.refresh_from_db()
    assert target.role == Role.ADMIN
    assert audit_actions(world_a.workspace)[0] == "member.role_changed"


@pytest.mark.parametrize(("as_role", "target_role", "new_role", "code", "field"), [
    (Role.DEVELOPER, Role.VIEWER, "developer", "permission_denied", None),
    (Role.VIEWER, Role.DEVELOPER, "viewer", "permission_denied", None),
    (Role.ADMIN, Role.OWNER, "viewer", "permission_denied", None),  # only Owners touch Owners
    (Role.ADMIN, Role.VIEWER, "owner", "permission_denied", None),  # never above your own role
    (Role.OWNER, Role.VIEWER, "superhero", "invalid_role", "role"),
    (Role.OWNER, Role.VIEWER, "agent", "invalid_role", "role"),
    (Role.OWNER, Role.OWNER, "admin", "last_owner", None),
])
def test_change_role_refusals(world_a, as_role, target_role, new_role, code, field):
    target = membership(world_a, target_role)
    body = gql(login(world_a.users[as_role]), CHANGE_ROLE,
               {"workspace": "acme", "memberId": str(target.pk), "role": new_role})
    assert ok(body)["changeMemberRole"] == {"member": None, "errors": [{"code": code, "field": field}]}
    target.refresh_from_db()
    assert target.role == target_role


def test_admin_removes_a_member_and_their_keys_stop(world_a):
    target = membership(world_a, Role.VIEWER)
    body = gql(login(world_a.users[Role.ADMIN]), REMOVE_MEMBER, {"workspace": "acme", "memberId": str(target.pk)})
    assert ok(body)["removeMember"] == {"ok": True, "errors": []}
    assert not Membership.objects.filter(pk=target.pk).exists()
    with rls_bypass():
        assert ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.VIEWER]).revoked_at
    assert world_a.client(Role.VIEWER, key=True).get(world_a.url("members/")).status_code == 401


@pytest.mark.parametrize(("as_role", "target_role"), [(Role.ADMIN, Role.OWNER), (Role.DEVELOPER, Role.VIEWER),
                                                      (Role.VIEWER, Role.DEVELOPER)])
def test_remove_member_refusals(world_a, as_role, target_role):
    target = membership(world_a, target_role)
    body = gql(login(world_a.users[as_role]), REMOVE_MEMBER, {"workspace": "acme", "memberId": str(target.pk)})
    assert ok(body)["removeMember"] == {"ok": False, "errors": [{"code": "permission_denied"}]}
    assert Membership.objects.filter(pk=target.pk).exists()


def test_member_leaves_but_the_last_owner_cannot(world_a):
    left = ok(gql(login(world_a.users[Role.DEVELOPER]), LEAVE, {"workspace": "acme"}))["leaveWorkspace"]
    last_owner = ok(gql(login(world_a.users[Role.OWNER]), LEAVE, {"workspace": "acme"}))["leaveWorkspace"]
    assert left == {"ok": True, "errors": []}
    assert not Membership.objects.filter(workspace=world_a.workspace, user=world_a.users[Role.DEVELOPER]).exists()
    assert last_owner == {"ok": False, "errors": [{"code": "last_owner"}]}
    assert membership(world_a, Role.OWNER).role == Role.OWNER


# --- Mutations: service accounts and keys --------------------------------------------------------

CREATE_SERVICE_ACCOUNT = """
mutation($workspace: String!, $name: String!, $role: String!, $description: String) {
  createServiceAccount(workspace: $workspace, name: $name, role: $role, description: $description) {
    serviceAccount { id name description role isRestricted createdAt } errors { code field }
  }
}
"""
DELETE_SERVICE_ACCOUNT = """
mutation($workspace: String!, $id: ID!) { deleteServiceAccount(workspace: $workspace, id: $id) { ok errors { code } } }
"""
CREATE_API_KEY = """
mutation($workspace: String!, $name: String!, $expiresAt: DateTime, $role: String) {
  createApiKey(workspace: $workspace, name: $name, expiresAt: $expiresAt, role: $role) {
    apiKey { id name kind owner lookupPrefix role expiresAt revokedAt } secret errors { code field }
  }
}
"""
CREATE_SERVICE_ACCOUNT_KEY = """
mutation($workspace: String!, $serviceAccountId: ID!, $name: String!, $expiresAt: DateTime) {
  createServiceAccountKey(workspace: $workspace, serviceAccountId: $serviceAccountId, name: $name,
                          expiresAt: $expiresAt) {
    apiKey { id kind owner lookupPrefix } secret errors { code field }
  }
}
"""
REVOKE_API_KEY = """
mutation($workspace: String!, $id: ID!) {
  revokeApiKey(workspace: $workspace, id: $id) { apiKey { id revokedAt } errors { code } }
}
"""


def test_admin_creates_a_service_account(world_a):
    variables = {"workspace": "acme", "name": "ci", "role": "developer", "description": "GitHub Actions"}
    payload = ok(gql(login(world_a.users[Role.ADMIN]), CREATE_SERVICE_ACCOUNT, variables))["createServiceAccount"]
    assert payload["errors"] == []
    created = payload["serviceAccount"]
    assert {k: created[k] for k in ("name", "description", "role", "isRestricted")} == {
        "name": "ci", "description": "GitHub Actions", "role": "developer", "isRestricted": False,
    }
    with rls_bypass():
        assert ServiceAccount.objects.for_workspace(world_a.workspace).get(pk=created["id"]).name == "ci"


@pytest.mark.parametrize(("as_role", "variables", "code", "field"), [
    (Role.DEVELOPER, {"name": "ci", "role": "agent"}, "permission_denied", None),
    (Role.ADMIN, {"name": "ci", "role": "owner"}, "invalid_role", "role"),
    (Role.ADMIN, {"name": "ci", "role": "superhero"}, "invalid_role", "role"),
    (Role.ADMIN, {"name": "agent", "role": "agent"}, "name_taken", None),
    (Role.ADMIN, {"name": "", "role": "agent"}, "invalid", "name"),
    (Role.ADMIN, {"name": "x" * 101, "role": "agent"}, "invalid", "name"),
    (Role.ADMIN, {"name": "ci", "role": "agent", "description": "d" * 501}, "invalid", "description"),
])
def test_create_service_account_refusals(world_a, as_role, variables, code, field):
    body = gql(login(world_a.users[as_role]), CREATE_SERVICE_ACCOUNT, {"workspace": "acme", **variables})
    assert ok(body)["createServiceAccount"] == {"serviceAccount": None, "errors": [{"code": code, "field": field}]}
    with rls_bypass():
        assert ServiceAccount.objects.for_workspace(world_a.workspace).count() == 1


def test_admin_deletes_a_service_account_and_its_keys_stop(world_a):
    variables = {"workspace": "acme", "id": str(world_a.agent.pk)}
    body = gql(login(world_a.users[Role.ADMIN]), DELETE_SERVICE_ACCOUNT, variables)
    assert ok(body)["deleteServiceAccount"] == {"ok": True, "errors": []}
    with rls_bypass():
        assert ServiceAccount.objects.for_workspace(world_a.workspace).get(pk=world_a.agent.pk).is_active is False
    assert world_a.client(Role.AGENT).get(world_a.url("members/")).status_code == 401


def test_developer_cannot_delete_a_service_account(world_a):
    variables = {"workspace": "acme", "id": str(world_a.agent.pk)}
    body = gql(login(world_a.users[Role.DEVELOPER]), DELETE_SERVICE_ACCOUNT, variables)
    assert ok(body)["deleteServiceAccount"] == {"ok": False, "errors": [{"code": "permission_denied"}]}


def test_developer_creates_a_personal_key_shown_once_that_works_on_rest(world_a):
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    variables = {"workspace": "acme", "name": "laptop", "expiresAt": expires.isoformat(), "role": "viewer"}
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), CREATE_API_KEY, variables))["createApiKey"]
    assert payload["errors"] == [] and payload["secret"].startswith("fd_u_")
    key = payload["apiKey"]
    assert {k: key[k] for k in ("name", "kind", "owner", "role", "expiresAt", "revokedAt")} == {
        "name": "laptop", "kind": "user", "owner": "developer@acme.example.com", "role": "viewer",
        "expiresAt": expires.isoformat(), "revokedAt": None,
    }
    assert payload["secret"].startswith(key["lookupPrefix"])
    rest = APIClient()
    rest.credentials(HTTP_AUTHORIZATION=f"Bearer {payload['secret']}")
    assert rest.get(world_a.url("members/")).status_code == 200
    listed = ok(gql(login(world_a.users[Role.DEVELOPER]), '{ workspace(slug: "acme") { apiKeys { name } } }'))
    assert "secret" not in str(listed) and {k["name"] for k in listed["workspace"]["apiKeys"]} == {"test key", "laptop"}


def test_a_datetime_without_offset_is_read_as_utc(world_a):
    variables = {"workspace": "acme", "name": "laptop", "expiresAt": "2999-01-01T00:00:00"}
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), CREATE_API_KEY, variables))["createApiKey"]
    assert payload["errors"] == [] and payload["apiKey"]["expiresAt"] == "2999-01-01T00:00:00+00:00"


@pytest.mark.parametrize(("as_role", "variables", "code", "field"), [
    (Role.VIEWER, {"name": "k"}, "permission_denied", None),
    (Role.DEVELOPER, {"name": "k", "role": "admin"}, "invalid_role", "role"),
    (Role.DEVELOPER, {"name": "k", "role": "superhero"}, "invalid_role", "role"),
    (Role.ADMIN, {"name": "k", "role": "agent"}, "invalid_role", "role"),
    (Role.DEVELOPER, {"name": "k", "expiresAt": "2001-01-01T00:00:00Z"}, "invalid_expiry", "expiresAt"),
    (Role.DEVELOPER, {"name": " "}, "invalid", "name"),
])
def test_create_api_key_refusals(world_a, as_role, variables, code, field):
    body = gql(login(world_a.users[as_role]), CREATE_API_KEY, {"workspace": "acme", **variables})
    assert ok(body)["createApiKey"] == {"apiKey": None, "secret": None, "errors": [{"code": code, "field": field}]}
    with rls_bypass():
        assert ApiKey.objects.for_workspace(world_a.workspace).count() == 5


def test_admin_creates_a_service_account_key_that_works_on_rest(world_a):
    variables = {"workspace": "acme", "serviceAccountId": str(world_a.agent.pk), "name": "runner-2"}
    body = gql(login(world_a.users[Role.ADMIN]), CREATE_SERVICE_ACCOUNT_KEY, variables)
    payload = ok(body)["createServiceAccountKey"]
    assert payload["errors"] == [] and payload["secret"].startswith("fd_sa_")
    assert payload["apiKey"]["kind"] == "service_account" and payload["apiKey"]["owner"] == "agent"
    rest = APIClient()
    rest.credentials(HTTP_AUTHORIZATION=f"Bearer {payload['secret']}")
    response = rest.get(world_a.url("members/"))
    # Authenticated as the agent (a bad key would be 401); the Agent role may not list members.
    assert response.status_code == 403 and response.json()["error"]["details"]["role"] == "agent"


def test_developer_cannot_mint_service_account_keys_unless_granted(world_a):
    variables = {"workspace": "acme", "serviceAccountId": str(world_a.agent.pk), "name": "k"}
    refused = ok(gql(login(world_a.users[Role.DEVELOPER]), CREATE_SERVICE_ACCOUNT_KEY, variables))
    assign_perm("manage_serviceaccount", world_a.users[Role.DEVELOPER], world_a.agent)
    granted = ok(gql(login(world_a.users[Role.DEVELOPER]), CREATE_SERVICE_ACCOUNT_KEY, variables))
    assert refused["createServiceAccountKey"]["errors"] == [{"code": "permission_denied", "field": None}]
    assert granted["createServiceAccountKey"]["errors"] == [] and granted["createServiceAccountKey"]["secret"]


def test_revoking_a_key_takes_effect_on_the_next_request(world_a):
    with rls_bypass():
        key = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.DEVELOPER])
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), REVOKE_API_KEY, {"workspace": "acme", "id": str(key.pk)}))
    assert payload["revokeApiKey"]["errors"] == [] and payload["revokeApiKey"]["apiKey"]["revokedAt"]
    assert world_a.client(Role.DEVELOPER, key=True).get(world_a.url("members/")).status_code == 401


def test_developer_cannot_revoke_someone_elses_key_but_admin_can(world_a):
    with rls_bypass():
        key = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.VIEWER])
    refused = ok(gql(login(world_a.users[Role.DEVELOPER]), REVOKE_API_KEY, {"workspace": "acme", "id": str(key.pk)}))
    revoked = ok(gql(login(world_a.users[Role.ADMIN]), REVOKE_API_KEY, {"workspace": "acme", "id": str(key.pk)}))
    assert refused["revokeApiKey"] == {"apiKey": None, "errors": [{"code": "permission_denied"}]}
    assert revoked["revokeApiKey"]["errors"] == []
    with rls_bypass():
        key.refresh_from_db()
    assert key.revoked_at is not None


# --- Documents with several mutations ------------------------------------------------------------


def test_mutations_run_one_after_another_and_a_failed_one_keeps_the_others(world_a):
    viewer = membership(world_a, Role.VIEWER)
    document = """
    mutation($viewer: ID!) {
      first: updateWorkspace(workspace: "acme", name: "Renamed") {
        workspace { members { id role } } errors { code }
      }
      second: changeMemberRole(workspace: "acme", memberId: $viewer, role: "developer") { errors { code } }
      third: createServiceAccount(workspace: "acme", name: "agent", role: "agent") { errors { code } }
    }
    """
    data = ok(gql(login(world_a.users[Role.OWNER]), document, {"viewer": str(viewer.pk)}))
    roles_seen_by_first = {m["id"]: m["role"] for m in data["first"]["workspace"]["members"]}
    # The first payload was read before the second mutation ran.
    assert roles_seen_by_first[str(viewer.pk)] == "viewer"
    assert data["second"]["errors"] == [] and data["third"]["errors"] == [{"code": "name_taken"}]
    world_a.workspace.refresh_from_db()
    viewer.refresh_from_db()
    assert world_a.workspace.name == "Renamed" and viewer.role == Role.DEVELOPER


# --- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("document", "variables"), [
    ('mutation { createWorkspace(name: 123) { errors { code } } }', {}),
    ("mutation { createWorkspace { errors { code } } }", {}),
    ("mutation($n: String!) { createWorkspace(name: $n) { errors { code } } }", {"n": ["a", "list"]}),
    ("mutation($n: String!) { createWorkspace(name: $n) { errors { code } } }", {}),
    ('mutation { createApiKey(workspace: "acme", name: "k", expiresAt: "yesterday") { errors { code } } }', {}),
    ('{ workspace(slug: "acme") { auditLog(first: "ten") { edges { cursor } } } }', {}),
    ('{ workspace(slug: "acme") { nope } }', {}),
    ("{ viewer { email }", {}),
])
def test_malformed_documents_and_wrong_types_are_400_with_a_code(world_a, document, variables):
    body = gql(login(world_a.users[Role.OWNER]), document, variables, status=400)
    assert "data" not in body and body["errors"]
    assert set(error_codes(body)) == {"invalid_query"}
    assert Workspace.objects.count() == 1


@pytest.mark.parametrize("mutation", [REVOKE_INVITATION, RESEND_INVITATION, DELETE_SERVICE_ACCOUNT, REVOKE_API_KEY])
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1", "00000000-0000-0000-0000-000000000000"])
def test_ids_that_are_not_ours_are_not_found(world_a, mutation, bad_id):
    body = gql(login(world_a.users[Role.OWNER]), mutation, {"workspace": "acme", "id": bad_id})
    payload = next(iter(ok(body).values()))
    assert [e["code"] for e in payload["errors"]] == ["not_found"]


@pytest.mark.parametrize("variables", [
    {"workspace": "acme", "name": "bad\x00name", "role": "agent"},
    {"workspace": "ac\x00me", "name": "ci", "role": "agent"},
    {"workspace": "acme", "name": "ci", "role": "agent", "description": "a\x00b"},
])
def test_nul_characters_are_bad_input(world_a, variables):
    body = gql(login(world_a.users[Role.ADMIN]), CREATE_SERVICE_ACCOUNT, variables, status=400)
    assert error_codes(body) == ["invalid_text"]


def test_nul_character_in_a_slug_query_is_a_400(world_a):
    body = gql(login(world_a.users[Role.ADMIN]), WORKSPACE, {"slug": "ac\x00me"}, status=400)
    assert error_codes(body) == ["invalid_text"]
