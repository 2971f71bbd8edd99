"""GraphQL mutations for accounts: small adapters over the accounts services (Saleor style).

Each mutation signs the caller in from the Django session, resolves the workspace from its slug
(a workspace you are not a member of does not exist), builds the Principal with
:func:`accounts.authz.principal_for_user`, checks its input the way the REST input serializers
do, and calls one service. What a person can act on — a service's error, ``not_found``,
``permission_denied`` — comes back in the payload's ``errors``; each mutation runs in its own
savepoint, so a failed one leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

import graphene
from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone

from accounts import selectors
from accounts.authz import NotFound, Principal, principal_for_user
from accounts.links import public_url
from accounts.services import api_keys, invitations, members, security, service_accounts, workspaces
from core.errors import InvalidInput

from .context import GraphQLContext, get_context
from .errors import EXPECTED_ERRORS, Error, error_list, not_authenticated
from .types import ApiKeyType, InvitationType, MemberType, PersonalApiKeyCountType, ServiceAccountType, WorkspaceType

# The limits the REST input serializers put on the same fields.
MAX_EMAIL_LENGTH = 254
MAX_DESCRIPTION_LENGTH = 500
MAX_PASSWORD_LENGTH = 4096


def _check_strings(arguments: dict[str, Any]) -> None:
    """PostgreSQL text cannot hold NUL characters; refuse them as bad input, not as a crash."""
    for name, value in arguments.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInput(f"'{name}' contains a NUL character.", details={name: ["NUL character."]})


def _object_id(value: Any) -> uuid.UUID:
    """A model id from an ``ID`` argument. Not a UUID → the same ``not_found`` as a missing one."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound() from None


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """A DateTime without a UTC offset is read as UTC."""
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value, dt.UTC)
    return value


def _principal(context: GraphQLContext, slug: str) -> Principal:
    workspace = selectors.workspace_get_for_user(context.user, slug)  # type: ignore[arg-type]
    return principal_for_user(context.user, workspace, context.ip_address)


class BaseMutation(graphene.Mutation):
    """Sign-in check, input hygiene, one savepoint, and errors in the payload."""

    errors = graphene.List(graphene.NonNull(Error), required=True)

    class Meta:
        abstract = True

    #: Extra payload values when the mutation fails (e.g. ``ok=False``).
    failure_values: ClassVar[dict[str, Any]] = {}

    @classmethod
    def mutate(cls, root: Any, info: Any, **arguments: Any) -> Any:
        context = get_context(info)
        if not context.is_authenticated:
            return cls(errors=not_authenticated(), **cls.failure_values)
        # Earlier mutations in the same document may have changed roles or memberships.
        context.reset()
        try:
            _check_strings(arguments)
            with transaction.atomic():
                return cls.perform(context, **arguments)
        except EXPECTED_ERRORS as exc:
            return cls(errors=error_list(exc), **cls.failure_values)
        finally:
            # The payload reads what this mutation changed.
            context.reset()

    @classmethod
    def perform(cls, context: GraphQLContext, **arguments: Any) -> Any:
        raise NotImplementedError


class CreateWorkspace(BaseMutation):
    """Create a workspace with you as its Owner."""

    class Arguments:
        name = graphene.String(required=True)
        slug = graphene.String(description="Chosen from the name when left out.")

    workspace = graphene.Field(WorkspaceType)

    @classmethod
    def perform(cls, context: GraphQLContext, name: str, slug: str | None = None) -> CreateWorkspace:
        workspace = workspaces.workspace_create(
            user=context.user, name=name, slug=slug, ip_address=context.ip_address  # type: ignore[arg-type]
        )
        context.widen_scope()
        return cls(workspace=workspace, errors=[])


class UpdateWorkspace(BaseMutation):
    """Rename a workspace or change its slug (Admin)."""

    class Arguments:
        workspace = graphene.String(required=True, description="The workspace's current slug.")
        name = graphene.String()
        slug = graphene.String()

    workspace = graphene.Field(WorkspaceType)

    @classmethod
    def perform(
        cls, context: GraphQLContext, workspace: str, name: str | None = None, slug: str | None = None
    ) -> UpdateWorkspace:
        actor = _principal(context, workspace)
        updated = workspaces.workspace_update(actor=actor, workspace=actor.workspace, name=name, slug=slug)
        return cls(workspace=updated, errors=[])


class DeleteWorkspace(BaseMutation):
    """Delete the workspace and everything in it (Owner); ``confirmSlug`` must repeat its slug."""

    class Arguments:
        workspace = graphene.String(required=True)
        confirm_slug = graphene.String(required=True)

    ok = graphene.Boolean(required=True)
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, confirm_slug: str) -> DeleteWorkspace:
        actor = _principal(context, workspace)
        workspaces.workspace_delete(actor=actor, workspace=actor.workspace, confirm_slug=confirm_slug)
        return cls(ok=True, errors=[])


class InviteMember(BaseMutation):
    """Invite someone by email with a role no higher than yours (Admin)."""

    class Arguments:
        workspace = graphene.String(required=True)
        email = graphene.String(required=True)
        role = graphene.String(required=True)

    invitation = graphene.Field(InvitationType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, email: str, role: str) -> InviteMember:
        if len(email) > MAX_EMAIL_LENGTH:
            raise InvalidInput("Enter a valid email address.", code="invalid_email", details={"email": ["Too long."]})
        actor = _principal(context, workspace)
        invitation, _token = invitations.invitation_create(
            actor=actor, email=email, role=role, base_url=public_url(context.request)
        )
        return cls(invitation=invitation, errors=[])


class RevokeInvitation(BaseMutation):
    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    invitation = graphene.Field(InvitationType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> RevokeInvitation:
        actor = _principal(context, workspace)
        invitation = invitations.invitation_revoke(actor=actor, invitation_id=_object_id(id))
        return cls(invitation=invitation, errors=[])


class ResendInvitation(BaseMutation):
    """Send a fresh link (the old one stops working) and restart the 7 days."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    invitation = graphene.Field(InvitationType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> ResendInvitation:
        actor = _principal(context, workspace)
        invitation, _token = invitations.invitation_resend(
            actor=actor, invitation_id=_object_id(id), base_url=public_url(context.request)
        )
        return cls(invitation=invitation, errors=[])


class AcceptInvitation(BaseMutation):
    """Join the workspace an invitation sent to your email address is for."""

    class Arguments:
        token = graphene.String(required=True)

    workspace = graphene.Field(WorkspaceType)

    @classmethod
    def perform(cls, context: GraphQLContext, token: str) -> AcceptInvitation:
        context.limit_invitation_attempts()
        membership = invitations.invitation_accept(token=token, user=context.user, ip_address=context.ip_address)  # type: ignore[arg-type]
        context.widen_scope()
        return cls(workspace=membership.workspace, errors=[])


class ChangeMemberRole(BaseMutation):
    class Arguments:
        workspace = graphene.String(required=True)
        member_id = graphene.ID(required=True)
        role = graphene.String(required=True)

    member = graphene.Field(MemberType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, member_id: str, role: str) -> ChangeMemberRole:
        actor = _principal(context, workspace)
        membership = selectors.membership_get(actor, _object_id(member_id))
        membership = members.membership_change_role(actor=actor, membership=membership, role=role)
        return cls(member=membership, errors=[])


class RemoveMember(BaseMutation):
    class Arguments:
        workspace = graphene.String(required=True)
        member_id = graphene.ID(required=True)

    ok = graphene.Boolean(required=True)
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, member_id: str) -> RemoveMember:
        actor = _principal(context, workspace)
        membership = selectors.membership_get(actor, _object_id(member_id))
        members.membership_remove(actor=actor, membership=membership)
        return cls(ok=True, errors=[])


class LeaveWorkspace(BaseMutation):
    class Arguments:
        workspace = graphene.String(required=True)

    ok = graphene.Boolean(required=True)
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str) -> LeaveWorkspace:
        actor = _principal(context, workspace)
        membership = selectors.membership_list(actor).filter(user=actor.user).first()
        if membership is None:
            raise NotFound()
        members.membership_remove(actor=actor, membership=membership)
        return cls(ok=True, errors=[])


class CreateServiceAccount(BaseMutation):
    class Arguments:
        workspace = graphene.String(required=True)
        name = graphene.String(required=True)
        role = graphene.String(required=True, description="admin, developer, viewer or agent.")
        description = graphene.String()

    service_account = graphene.Field(ServiceAccountType)

    @classmethod
    def perform(
        cls, context: GraphQLContext, workspace: str, name: str, role: str, description: str | None = None
    ) -> CreateServiceAccount:
        if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidInput(
                f"A description is at most {MAX_DESCRIPTION_LENGTH} characters.", details={"description": ["Too long."]}
            )
        actor = _principal(context, workspace)
        account = service_accounts.service_account_create(
            actor=actor, name=name, role=role, description=description or ""
        )
        return cls(service_account=account, errors=[])


class DeleteServiceAccount(BaseMutation):
    """Deactivate a service account and revoke all its keys."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    ok = graphene.Boolean(required=True)
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> DeleteServiceAccount:
        actor = _principal(context, workspace)
        account = service_accounts.service_account_get(actor=actor, service_account_id=_object_id(id))
        service_accounts.service_account_delete(actor=actor, account=account)
        return cls(ok=True, errors=[])


class CreateApiKey(BaseMutation):
    """A personal API key; the secret is shown in this payload only."""

    class Arguments:
        workspace = graphene.String(required=True)
        name = graphene.String(required=True)
        expires_at = graphene.DateTime()
        role = graphene.String(description="Narrow the key below your role; null means your role.")

    api_key = graphene.Field(ApiKeyType)
    secret = graphene.String()

    @classmethod
    def perform(
        cls,
        context: GraphQLContext,
        workspace: str,
        name: str,
        expires_at: dt.datetime | None = None,
        role: str | None = None,
    ) -> CreateApiKey:
        if role is not None:
            members.validate_human_role(role)
        actor = _principal(context, workspace)
        created = api_keys.api_key_create_for_user(actor=actor, name=name, expires_at=_aware(expires_at), role=role)
        return cls(api_key=created.key, secret=created.secret, errors=[])


class CreateServiceAccountKey(BaseMutation):
    """A key for a service account; the secret is shown in this payload only."""

    class Arguments:
        workspace = graphene.String(required=True)
        service_account_id = graphene.ID(required=True)
        name = graphene.String(required=True)
        expires_at = graphene.DateTime()

    api_key = graphene.Field(ApiKeyType)
    secret = graphene.String()

    @classmethod
    def perform(
        cls,
        context: GraphQLContext,
        workspace: str,
        service_account_id: str,
        name: str,
        expires_at: dt.datetime | None = None,
    ) -> CreateServiceAccountKey:
        actor = _principal(context, workspace)
        account = service_accounts.service_account_get(actor=actor, service_account_id=_object_id(service_account_id))
        created = api_keys.api_key_create_for_service_account(
            actor=actor, account=account, name=name, expires_at=_aware(expires_at)
        )
        return cls(api_key=created.key, secret=created.secret, errors=[])


class RevokeApiKey(BaseMutation):
    """Revoke a key; it stops working on the next request."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    api_key = graphene.Field(ApiKeyType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> RevokeApiKey:
        actor = _principal(context, workspace)
        key = api_keys.api_key_revoke(actor=actor, key=api_keys.api_key_get(actor=actor, key_id=_object_id(id)))
        return cls(api_key=key, errors=[])


class SignOutEverywhere(BaseMutation):
    """Sign out every session of yours, this one included, and revoke all your personal API keys in
    every workspace (service-account keys are left alone). Needs your current password."""

    class Arguments:
        password = graphene.String(required=True, description="Your current password.")

    ok = graphene.Boolean(required=True)
    sessions_ended = graphene.Int(
        description="Sessions opened by logging in that were ended, this one included; any other session of yours "
                    "stops working on its next request too."
    )
    revoked_api_keys = graphene.Int(description="Personal API keys revoked, in all workspaces.")
    workspaces = graphene.List(
        graphene.NonNull(PersonalApiKeyCountType), description="Each of your workspaces and the keys revoked there."
    )
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, password: str) -> SignOutEverywhere:
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidInput("That is not your current password.", code="wrong_password",
                               details={"password": ["Too long."]})
        result = security.sign_out_everywhere(
            user=context.user, password=password, ip_address=context.ip_address  # type: ignore[arg-type]
        )
        logout(context.request)  # this browser too: the answer clears its session cookie
        context.user = AnonymousUser()  # and nothing later in the document acts as the person
        return cls(
            ok=True, sessions_ended=result.sessions_ended, revoked_api_keys=result.revoked_api_keys,
            workspaces=[
                PersonalApiKeyCountType(workspace_slug=w.workspace.slug, workspace_name=w.workspace.name,
                                        count=w.revoked_api_keys)
                for w in result.workspaces
            ],
            errors=[],
        )
