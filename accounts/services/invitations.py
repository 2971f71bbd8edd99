"""Invitations (B4): a single-use, hashed, 7-day token bound to workspace, email and role."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.authz import NotFound, Principal, authorize, can_grant_role, permission_denied
from accounts.links import public_url
from accounts.models import Invitation, Membership, User, Workspace
from billing.quotas import check_seat_available
from core.errors import Conflict, Forbidden, Gone, InvalidInput
from core.tenancy import rls_bypass, workspace_scope

from .audit import audit_record
from .members import validate_human_role


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_link(token: str, *, base_url: str = "") -> str:
    return f"{base_url or public_url()}/invitations/{token}"


def _send(invitation: Invitation, token: str, inviter_label: str, base_url: str) -> None:
    workspace = invitation.workspace
    link = invitation_link(token, base_url=base_url)
    body = (
        f"{inviter_label} invited you to join the Flowdeck workspace \"{workspace.name}\" as "
        f"{invitation.get_role_display()}.\n\nAccept the invitation:\n{link}\n\n"
        f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    email = invitation.email
    transaction.on_commit(
        lambda: send_mail(f"Join {workspace.name} on Flowdeck", body, None, [email], fail_silently=False)
    )


def _normalize_email(email: str) -> str:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(
            "Enter a valid email address.", code="invalid_email", details={"email": ["Invalid."]}
        ) from None
    return email


@transaction.atomic
def invitation_create(*, actor: Principal, email: str, role: str, base_url: str = "") -> tuple[Invitation, str]:
    """Invite ``email`` with ``role``; returns the invitation and its token (only ever in the email).
    ``base_url`` is where the e-mailed link points (:func:`accounts.links.public_url`)."""
    workspace = actor.workspace
    authorize(actor, "invitation:create", workspace)
    validate_human_role(role)
    email = _normalize_email(email)
    if not can_grant_role(actor.role, role):
        raise permission_denied("invitation:create", actor.role, "You can invite people with a role up to your own.")
    if Membership.objects.filter(workspace=workspace, user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member of this workspace.", code="already_member")
    pending = (
        Invitation.objects.for_workspace(workspace)
        .filter(email=email, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .exists()
    )
    if pending:
        raise Conflict(f"{email} already has a pending invitation; resend or revoke it.", code="already_invited")
    check_seat_available(workspace)  # a pending invitation holds a seat (402 past the plan's seats)
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    invitation = Invitation.objects.unscoped().create(
        workspace=workspace,
        email=email,
        role=role,
        token_hash=_hash(token),
        invited_by=actor.user,
        created_at=now,
        expires_at=now + timedelta(days=settings.INVITATION_TTL_DAYS),
    )
    _send(invitation, token, actor.label, base_url)
    audit_record(workspace=workspace, action="invitation.created", target=invitation, actor=actor,
                 data={"email": email, "role": role})
    return invitation, token


def _pending_for_update(actor: Principal, invitation_id) -> Invitation:
    invitation = Invitation.objects.for_workspace(actor.workspace).select_for_update().filter(pk=invitation_id).first()
    if invitation is None:
        raise NotFound()
    if invitation.accepted_at:
        raise Gone("This invitation was already accepted.", code="invitation_used")
    if invitation.revoked_at:
        raise Gone("This invitation was revoked.", code="invitation_revoked")
    return invitation


@transaction.atomic
def invitation_revoke(*, actor: Principal, invitation_id) -> Invitation:
    authorize(actor, "invitation:revoke", actor.workspace)
    invitation = _pending_for_update(actor, invitation_id)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(workspace=actor.workspace, action="invitation.revoked", target=invitation, actor=actor,
                 data={"email": invitation.email})
    return invitation


@transaction.atomic
def invitation_resend(*, actor: Principal, invitation_id, base_url: str = "") -> tuple[Invitation, str]:
    """Send a fresh link (the old one stops working) and restart the 7 days."""
    authorize(actor, "invitation:create", actor.workspace)
    invitation = _pending_for_update(actor, invitation_id)
    if not can_grant_role(actor.role, invitation.role):
        raise permission_denied("invitation:create", actor.role, "You can invite people with a role up to your own.")
    token = secrets.token_urlsafe(32)
    invitation.token_hash = _hash(token)
    invitation.expires_at = timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS)
    invitation.send_count += 1
    invitation.save(update_fields=["token_hash", "expires_at", "send_count"])
    _send(invitation, token, actor.label, base_url)
    audit_record(workspace=actor.workspace, action="invitation.resent", target=invitation, actor=actor,
                 data={"email": invitation.email})
    return invitation, token


def invitation_by_token(token: str, *, for_update: bool = False) -> Invitation:
    """The invitation a token names, whatever its status; NotFound for a token that names none."""
    if not token or len(token) > 200:
        raise NotFound()
    with rls_bypass():
        qs = Invitation.objects.unscoped().select_related("workspace", "invited_by")
        if for_update:
            qs = qs.select_for_update(of=("self",))
        invitation = qs.filter(token_hash=_hash(token)).first()
    if invitation is None:
        raise NotFound()
    return invitation


def check_usable(invitation: Invitation) -> None:
    if invitation.accepted_at:
        raise Gone("This invitation has already been used.", code="invitation_used")
    if invitation.revoked_at:
        raise Gone("This invitation was revoked; ask for a new one.", code="invitation_revoked")
    if invitation.expires_at <= timezone.now():
        raise Gone("This invitation has expired; ask for a new one.", code="invitation_expired")


@transaction.atomic
def invitation_accept(*, token: str, user: User, ip_address: str | None = None) -> Membership:
    """Accept for a signed-in user whose email the invitation was sent to. Of two concurrent
    accepts, the row lock lets exactly one through; the other sees it used (410)."""
    invitation = invitation_by_token(token, for_update=True)
    check_usable(invitation)
    if user.email.lower() != invitation.email.lower():
        raise Forbidden(
            "This invitation was sent to another email address; sign in with the address it was sent to.",
            code="invitation_email_mismatch",
        )
    workspace: Workspace = invitation.workspace
    with workspace_scope([workspace.pk]):
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        membership, created = Membership.objects.get_or_create(
            workspace=workspace, user=user, defaults={"role": invitation.role}
        )
        audit_record(
            workspace=workspace, action="invitation.accepted", target=invitation, actor_user=user,
            ip_address=ip_address, data={"email": invitation.email, "role": invitation.role, "joined": created},
        )
    return membership
