"""C1 over GraphQL: another workspace's slug or ids answer exactly like missing ones (null for reads,
``not_found`` for mutations) and change nothing; anonymous callers get ``not_authenticated``.

The mutation documents are generated from the schema, and a meta-test checks that the table below
names every mutation, so a new mutation cannot be left out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import GraphQLNonNull, get_named_type

from accounts.models import ApiKey, AuditLogEntry, Invitation, Membership, Role, ServiceAccount
from config.schema import schema
from core.tenancy import rls_bypass
from tests.accounts.test_graphql import gql, invite, login, membership, ok


@dataclass
class Targets:
    """Ids of world A's objects that world B's people must not reach."""

    invitation: str
    member: str
    service_account: str
    api_key: str


@pytest.fixture
def targets(world_a) -> Targets:  # type: ignore[no-untyped-def]
    invitation, _ = invite(world_a, "new@example.com")
    with rls_bypass():
        key = ApiKey.objects.for_workspace(world_a.workspace).get(user=world_a.users[Role.DEVELOPER])
    return Targets(
        invitation=str(invitation.pk),
        member=str(membership(world_a, Role.VIEWER).pk),
        service_account=str(world_a.agent.pk),
        api_key=str(key.pk),
    )


# Mutation -> its arguments, given world A's targets and the workspace slug to send.
MUTATION_ARGUMENTS: dict[str, Any] = {
    "createWorkspace": lambda t, slug: {"name": "Elsewhere"},
    "acceptInvitation": lambda t, slug: {"token": "not-a-token"},
    "updateWorkspace": lambda t, slug: {"workspace": slug, "name": "Hijacked"},
    "deleteWorkspace": lambda t, slug: {"workspace": slug, "confirmSlug": slug},
    "inviteMember": lambda t, slug: {"workspace": slug, "email": "x@example.com", "role": "viewer"},
    "revokeInvitation": lambda t, slug: {"workspace": slug, "id": t.invitation},
    "resendInvitation": lambda t, slug: {"workspace": slug, "id": t.invitation},
    "changeMemberRole": lambda t, slug: {"workspace": slug, "memberId": t.member, "role": "admin"},
    "removeMember": lambda t, slug: {"workspace": slug, "memberId": t.member},
    "leaveWorkspace": lambda t, slug: {"workspace": slug},
    "createServiceAccount": lambda t, slug: {"workspace": slug, "name": "evil", "role": "admin"},
    "deleteServiceAccount": lambda t, slug: {"workspace": slug, "id": t.service_account},
    "createApiKey": lambda t, slug: {"workspace": slug, "name": "evil"},
    "createServiceAccountKey": lambda t, slug: {
        "workspace": slug, "serviceAccountId": t.service_account, "name": "evil"
    },
    "revokeApiKey": lambda t, slug: {"workspace": slug, "id": t.api_key},
    # The caller's own account across their workspaces (tests/accounts/test_sign_out_everywhere.py).
    "signOutEverywhere": lambda t, slug: {"password": "not the password"},
}
NOT_WORKSPACE_SCOPED = {"createWorkspace", "acceptInvitation", "signOutEverywhere"}
WORKSPACE_MUTATIONS = sorted(set(MUTATION_ARGUMENTS) - NOT_WORKSPACE_SCOPED)
# Mutations that name one of world A's objects by id (sent with world B's own slug as well).
ID_MUTATIONS = [
    name for name in WORKSPACE_MUTATIONS
    if {"id", "memberId", "serviceAccountId"} & set(schema.graphql_schema.mutation_type.fields[name].args)
]


def document_for(name: str, variables: dict[str, Any]) -> str:
    """``mutation($a: T!, …) { name(a: $a, …) { errors { code } } }`` from the schema."""
    args = schema.graphql_schema.mutation_type.fields[name].args
    declarations = ", ".join(f"${arg}: {args[arg].type}" for arg in variables)
    passing = ", ".join(f"{arg}: ${arg}" for arg in variables)
    return f"mutation({declarations}) {{ {name}({passing}) {{ errors {{ code }} }} }}"


def world_a_state(world_a) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Everything the mutations above could change in world A."""
    ws = world_a.workspace
    ws.refresh_from_db()
    with rls_bypass():
        return {
            "workspace": (ws.name, ws.slug),
            "members": sorted(Membership.objects.filter(workspace=ws).values_list("user__email", "role")),
            "invitations": sorted(
                Invitation.objects.for_workspace(ws).values_list("email", "send_count", "revoked_at")
            ),
            "service_accounts": sorted(ServiceAccount.objects.for_workspace(ws).values_list("name", "is_active")),
            "keys": sorted(ApiKey.objects.for_workspace(ws).values_list("lookup_prefix", "revoked_at")),
            "audit": AuditLogEntry.objects.for_workspace(ws).count(),
        }


def test_the_table_names_every_mutation_with_all_its_required_arguments():
    from graphene.utils.str_converters import to_camel_case

    from accounts.graphql.schema import AccountsMutation

    accounts_names = {to_camel_case(name) for name in AccountsMutation._meta.fields}
    fields = {n: f for n, f in schema.graphql_schema.mutation_type.fields.items() if n in accounts_names}
    sample = Targets(invitation="i", member="m", service_account="s", api_key="k")
    assert set(MUTATION_ARGUMENTS) == accounts_names
    for name, field in fields.items():
        required = {arg for arg, definition in field.args.items() if isinstance(definition.type, GraphQLNonNull)}
        assert required <= set(MUTATION_ARGUMENTS[name](sample, "x")), name
        assert "errors" in get_named_type(field.type).fields, name
    assert ID_MUTATIONS == ["changeMemberRole", "createServiceAccountKey", "deleteServiceAccount", "removeMember",
                            "resendInvitation", "revokeApiKey", "revokeInvitation"]


@pytest.mark.parametrize("name", WORKSPACE_MUTATIONS)
def test_another_workspaces_slug_is_not_found_and_changes_nothing(world_a, world_b, targets, name):
    before = world_a_state(world_a)
    variables = MUTATION_ARGUMENTS[name](targets, world_a.workspace.slug)
    body = gql(login(world_b.users[Role.OWNER]), document_for(name, variables), variables)
    assert ok(body)[name]["errors"] == [{"code": "not_found"}]
    assert world_a_state(world_a) == before


@pytest.mark.parametrize("name", ID_MUTATIONS)
def test_another_workspaces_ids_in_your_own_workspace_are_not_found(world_a, world_b, targets, name):
    before = world_a_state(world_a)
    variables = MUTATION_ARGUMENTS[name](targets, world_b.workspace.slug)
    body = gql(login(world_b.users[Role.OWNER]), document_for(name, variables), variables)
    assert ok(body)[name]["errors"] == [{"code": "not_found"}]
    assert world_a_state(world_a) == before


@pytest.mark.parametrize("name", sorted(MUTATION_ARGUMENTS))
def test_anonymous_mutations_are_not_authenticated(world_a, targets, name):
    before = world_a_state(world_a)
    variables = MUTATION_ARGUMENTS[name](targets, world_a.workspace.slug)
    body = gql(login(), document_for(name, variables), variables)
    assert ok(body)[name]["errors"] == [{"code": "not_authenticated"}]
    assert world_a_state(world_a) == before


FULL_READ = """
query($slug: String!) {
  workspace(slug: $slug) { id }
  workspaces {
    id slug members { id user { id email } }
    invitations { id email } serviceAccounts { id name } apiKeys { id owner lookupPrefix }
    auditLog { edges { node { id targetLabel } } }
  }
}
"""


def test_another_workspace_is_invisible_to_every_read(world_a, world_b, targets):
    invite(world_b, "someone@example.com")
    body = gql(login(world_b.users[Role.OWNER]), FULL_READ, {"slug": world_a.workspace.slug})
    data = ok(body)
    assert data["workspace"] is None
    assert [w["slug"] for w in data["workspaces"]] == ["globex"]
    dumped = json.dumps(data)
    with rls_bypass():
        prefixes = list(ApiKey.objects.for_workspace(world_a.workspace).values_list("lookup_prefix", flat=True))
    leaked = [value for value in [str(world_a.workspace.pk), *vars(targets).values(), "acme.example.com", *prefixes]
              if value in dumped]
    assert leaked == []
