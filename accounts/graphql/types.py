"""GraphQL object types for accounts. Fields are listed explicitly; nothing is exposed by default.

Every list on :class:`WorkspaceType` is read with the viewer's Principal for that workspace through
the accounts selectors (via the request's DataLoaders), so the same ``authorize`` decides as for
REST. A list the viewer's role may not read (invitations, the audit log for a Viewer) is null with
a ``permission_denied`` error on that field, and the rest of the workspace still resolves.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import graphene
from django.db.models import Q
from graphene.types.generic import GenericScalar
from graphene_django.settings import graphene_settings
from graphql import GraphQLError

from accounts import selectors
from accounts.authz import NotFound, Principal
from accounts.models import ApiKey, AuditLogEntry, Invitation, Workspace

from .context import get_context
from .errors import EXPECTED_ERRORS, graphql_error

AUDIT_LOG_PAGE_SIZE = 50


class UserType(graphene.ObjectType):
    class Meta:
        name = "User"

    id = graphene.ID(required=True)
    email = graphene.String(required=True)
    full_name = graphene.String(required=True)


class PersonalApiKeyCountType(graphene.ObjectType):
    """How many of your personal API keys one of your workspaces holds."""

    class Meta:
        name = "PersonalApiKeyCount"

    workspace_slug = graphene.String(required=True)
    workspace_name = graphene.String(required=True)
    count = graphene.Int(required=True)


class MemberType(graphene.ObjectType):
    class Meta:
        name = "Member"

    id = graphene.ID(required=True)
    role = graphene.String(required=True)
    created_at = graphene.DateTime(required=True)
    user = graphene.Field(UserType, required=True)


class InvitationType(graphene.ObjectType):
    class Meta:
        name = "Invitation"

    id = graphene.ID(required=True)
    email = graphene.String(required=True)
    role = graphene.String(required=True)
    status = graphene.String(required=True, description="pending, accepted, revoked or expired.")
    invited_by = graphene.String(description="The inviter's email; null once they are gone.")
    created_at = graphene.DateTime(required=True)
    expires_at = graphene.DateTime(required=True)
    send_count = graphene.Int(required=True)

    @staticmethod
    def resolve_invited_by(invitation: Invitation, info: Any) -> str | None:
        return invitation.invited_by.email if invitation.invited_by is not None else None


class InvitationPreviewType(graphene.ObjectType):
    """What an invitation link is for, shown before accepting (no sign-in needed)."""

    class Meta:
        name = "InvitationPreview"

    workspace_name = graphene.String(required=True)
    workspace_slug = graphene.String(required=True)
    email = graphene.String(required=True)
    role = graphene.String(required=True)
    invited_by = graphene.String()
    status = graphene.String(required=True)
    expires_at = graphene.DateTime(required=True)

    @staticmethod
    def resolve_workspace_name(invitation: Invitation, info: Any) -> str:
        return invitation.workspace.name

    @staticmethod
    def resolve_workspace_slug(invitation: Invitation, info: Any) -> str:
        return invitation.workspace.slug

    @staticmethod
    def resolve_invited_by(invitation: Invitation, info: Any) -> str | None:
        return invitation.invited_by.email if invitation.invited_by is not None else None


class ServiceAccountType(graphene.ObjectType):
    class Meta:
        name = "ServiceAccount"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    description = graphene.String(required=True)
    role = graphene.String(required=True)
    is_restricted = graphene.Boolean(required=True)
    created_at = graphene.DateTime(required=True)


class ApiKeyType(graphene.ObjectType):
    """An API key's metadata; the secret itself is only in the payload that created it."""

    class Meta:
        name = "ApiKey"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    kind = graphene.String(required=True, description="user or service_account.")
    owner = graphene.String(required=True, description="The user's email or the service account's name.")
    lookup_prefix = graphene.String(required=True)
    role = graphene.String(description="A narrower role for a user key; null means the owner's role.")
    created_at = graphene.DateTime(required=True)
    expires_at = graphene.DateTime()
    last_used_at = graphene.DateTime()
    revoked_at = graphene.DateTime()

    @staticmethod
    def resolve_owner(key: ApiKey, info: Any) -> str:
        if key.kind == ApiKey.Kind.USER:
            return key.user.email  # type: ignore[union-attr]
        return key.service_account.name  # type: ignore[union-attr]


class AuditLogEntryType(graphene.ObjectType):
    class Meta:
        name = "AuditLogEntry"

    id = graphene.ID(required=True)
    created_at = graphene.DateTime(required=True)
    actor = graphene.String(required=True)
    action = graphene.String(required=True)
    target_type = graphene.String(required=True)
    target_label = graphene.String(required=True)
    data = GenericScalar()
    ip_address = graphene.String()

    @staticmethod
    def resolve_actor(entry: AuditLogEntry, info: Any) -> str:
        return entry.actor_label


class AuditLogConnection(graphene.relay.Connection):
    """The audit log, newest first."""

    class Meta:
        node = AuditLogEntryType


def _encode_cursor(entry: AuditLogEntry) -> str:
    return base64.urlsafe_b64encode(f"{entry.created_at.isoformat()}|{entry.pk}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, pk = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), uuid.UUID(pk)
    except (ValueError, binascii.Error):
        raise GraphQLError("The cursor is not one this API gave out.", extensions={"code": "invalid_cursor"}) from None


def _principal(info: Any, workspace: Workspace) -> Principal:
    try:
        return get_context(info).principal(workspace)
    except NotFound as exc:
        raise graphql_error(exc) from None


class WorkspaceType(graphene.ObjectType):
    class Meta:
        name = "Workspace"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    slug = graphene.String(required=True)
    created_at = graphene.DateTime(required=True)
    viewer_role = graphene.String(required=True, description="The signed-in user's role here.")
    members = graphene.List(graphene.NonNull(MemberType), required=True)
    invitations = graphene.List(
        graphene.NonNull(InvitationType), description="Null with a permission_denied error below Admin."
    )
    service_accounts = graphene.List(graphene.NonNull(ServiceAccountType), required=True)
    api_keys = graphene.List(
        graphene.NonNull(ApiKeyType), required=True, description="Every key for Admins; your own keys otherwise."
    )
    audit_log = graphene.Field(
        AuditLogConnection,
        first=graphene.Int(default_value=AUDIT_LOG_PAGE_SIZE),
        after=graphene.String(),
        area=graphene.String(description="Only this area's entries: " + ", ".join(sorted(selectors.AUDIT_LOG_AREAS))),
        description="Newest first. Null with a permission_denied error below Admin.",
    )

    @staticmethod
    def resolve_viewer_role(workspace: Workspace, info: Any) -> str:
        return _principal(info, workspace).role

    @staticmethod
    def resolve_members(workspace: Workspace, info: Any) -> Any:
        return get_context(info).loaders.members.load(_principal(info, workspace))

    @staticmethod
    def resolve_invitations(workspace: Workspace, info: Any) -> Any:
        return get_context(info).loaders.invitations.load(_principal(info, workspace))

    @staticmethod
    def resolve_service_accounts(workspace: Workspace, info: Any) -> Any:
        return get_context(info).loaders.service_accounts.load(_principal(info, workspace))

    @staticmethod
    def resolve_api_keys(workspace: Workspace, info: Any) -> Any:
        return get_context(info).loaders.api_keys.load(_principal(info, workspace))

    @staticmethod
    def resolve_audit_log(
        workspace: Workspace, info: Any, first: int | None = None, after: str | None = None, area: str | None = None
    ) -> Any:
        limit = graphene_settings.RELAY_CONNECTION_MAX_LIMIT
        first = AUDIT_LOG_PAGE_SIZE if first is None else first
        if not 0 <= first <= limit:
            raise GraphQLError(f"'first' must be between 0 and {limit}.", extensions={"code": "invalid_argument"})
        if area is not None and area not in selectors.AUDIT_LOG_AREAS:
            known = ", ".join(sorted(selectors.AUDIT_LOG_AREAS))
            raise GraphQLError(
                f"Unknown area '{area[:50]}'; use one of {known}.", extensions={"code": "invalid_argument"}
            )
        try:
            entries = selectors.audit_log_list(_principal(info, workspace), area=area)
        except EXPECTED_ERRORS as exc:
            raise graphql_error(exc) from None
        entries = entries.order_by("-created_at", "-id")
        if after:
            created_at, pk = _decode_cursor(after)
            entries = entries.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk))
        page = list(entries[: first + 1])
        has_next = len(page) > first
        edges = [AuditLogConnection.Edge(node=entry, cursor=_encode_cursor(entry)) for entry in page[:first]]
        return AuditLogConnection(
            edges=edges,
            page_info=graphene.relay.PageInfo(
                has_next_page=has_next,
                has_previous_page=bool(after),
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
        )
