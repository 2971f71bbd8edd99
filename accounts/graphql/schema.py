"""The accounts part of the GraphQL schema: what the web app reads and the UI actions it performs."""

from __future__ import annotations

from typing import Any

import graphene

from accounts import selectors
from accounts.authz import NotFound
from accounts.models import User, Workspace
from accounts.services import invitations
from core.errors import TooManyRequests

from . import mutations as m
from .context import get_context
from .errors import graphql_error
from .types import InvitationPreviewType, PersonalApiKeyCountType, UserType, WorkspaceType

MAX_TOKEN_LENGTH = 200


class AccountsQuery(graphene.ObjectType):
    viewer = graphene.Field(UserType, description="The signed-in user; null when not signed in.")
    workspaces = graphene.List(
        graphene.NonNull(WorkspaceType), required=True, description="The workspaces you are a member of."
    )
    workspace = graphene.Field(
        WorkspaceType,
        slug=graphene.String(required=True),
        description="A workspace you are a member of; null for any other slug.",
    )
    personal_api_keys = graphene.List(
        graphene.NonNull(PersonalApiKeyCountType),
        required=True,
        description="Your personal API keys that still work, per workspace (workspaces without any left out): "
                    "what signOutEverywhere would revoke. Empty when not signed in.",
    )
    invitation = graphene.Field(
        InvitationPreviewType,
        token=graphene.String(required=True),
        description="What an invitation link is for; null for a token that names none.",
    )

    @staticmethod
    def resolve_viewer(root: Any, info: Any) -> User | None:
        context = get_context(info)
        return context.user if context.is_authenticated else None  # type: ignore[return-value]

    @staticmethod
    def resolve_workspaces(root: Any, info: Any) -> list[Workspace]:
        context = get_context(info)
        if not context.is_authenticated:
            return []
        found = list(selectors.workspace_list_for_user(context.user))  # type: ignore[arg-type]
        context.prime_principals(found)
        return found

    @staticmethod
    def resolve_personal_api_keys(root: Any, info: Any) -> list[PersonalApiKeyCountType]:
        context = get_context(info)
        if not context.is_authenticated:
            return []
        return [
            PersonalApiKeyCountType(workspace_slug=c.workspace.slug, workspace_name=c.workspace.name,
                                    count=c.active_api_keys)
            for c in selectors.personal_api_key_counts(context.user)  # type: ignore[arg-type]
        ]

    @staticmethod
    def resolve_workspace(root: Any, info: Any, slug: str) -> Workspace | None:
        context = get_context(info)
        if not context.is_authenticated or "\x00" in slug:
            return None
        try:
            return selectors.workspace_get_for_user(context.user, slug)  # type: ignore[arg-type]
        except NotFound:
            return None

    @staticmethod
    def resolve_invitation(root: Any, info: Any, token: str) -> Any:
        context = get_context(info)
        try:
            context.limit_invitation_attempts()
        except TooManyRequests as exc:
            raise graphql_error(exc) from None
        if "\x00" in token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            return invitations.invitation_by_token(token)
        except NotFound:
            return None


class AccountsMutation(graphene.ObjectType):
    create_workspace = m.CreateWorkspace.Field()
    update_workspace = m.UpdateWorkspace.Field()
    delete_workspace = m.DeleteWorkspace.Field()
    invite_member = m.InviteMember.Field()
    revoke_invitation = m.RevokeInvitation.Field()
    resend_invitation = m.ResendInvitation.Field()
    accept_invitation = m.AcceptInvitation.Field()
    change_member_role = m.ChangeMemberRole.Field()
    remove_member = m.RemoveMember.Field()
    leave_workspace = m.LeaveWorkspace.Field()
    create_service_account = m.CreateServiceAccount.Field()
    delete_service_account = m.DeleteServiceAccount.Field()
    create_api_key = m.CreateApiKey.Field()
    create_service_account_key = m.CreateServiceAccountKey.Field()
    revoke_api_key = m.RevokeApiKey.Field()
    sign_out_everywhere = m.SignOutEverywhere.Field()
