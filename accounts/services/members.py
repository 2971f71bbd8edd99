"""Team membership: roles, removal, leaving. A workspace always keeps at least one Owner."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts import key_cache
from accounts.authz import RANK, Principal, authorize, can_grant_role, permission_denied
from accounts.models import ApiKey, Invitation, Membership, Role, Workspace
from core.errors import Conflict, InvalidInput
from core.events import send_after_commit
from core.live.control import close_user_sockets
from core.live.groups import user_group
from core.tenancy import workspace_scope

from .audit import audit_record

HUMAN_ROLES = (Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.VIEWER)


def seat_count(workspace: Workspace) -> int:
    """Seats billed for a workspace: its human members plus pending invitations. Billing enforces
    its plan's limit on this one number."""
    # Scoped here because billing calls it outside requests too (usage sync, quota checks).
    with workspace_scope([workspace.pk]):
        members = Membership.objects.filter(workspace=workspace).count()
        pending = (
            Invitation.objects.for_workspace(workspace)
            .filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
            .count()
        )
    return members + pending


def _locked_owners(workspace: Workspace) -> list[Membership]:
    # Lock every Owner row so two concurrent demotions cannot both pass the last-owner check.
    return list(Membership.objects.select_for_update().filter(workspace=workspace, role=Role.OWNER).order_by("id"))


def validate_human_role(role: str) -> str:
    if role not in HUMAN_ROLES:
        raise InvalidInput(
            f"'{role}' is not a member role; choose one of owner, admin, developer, viewer.",
            code="invalid_role",
            details={"role": [f"Choose one of {', '.join(HUMAN_ROLES)}."]},
        )
    return role


@transaction.atomic
def membership_change_role(*, actor: Principal, membership: Membership, role: str) -> Membership:
    authorize(actor, "member:update_role", membership.workspace)
    validate_human_role(role)
    if not can_grant_role(actor.role, role) or (
        membership.role == Role.OWNER and actor.role != Role.OWNER
    ):
        raise permission_denied(
            "member:update_role", actor.role,
            "Only an Owner can make someone an Owner or change an Owner's role; "
            "others can give roles up to their own.",
        )
    owners = _locked_owners(membership.workspace)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise Conflict("A workspace must keep at least one Owner; make someone else Owner first.", code="last_owner")
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        workspace=membership.workspace, action="member.role_changed", target=membership.user, actor=actor,
        data={"from": previous, "to": role},
    )
    _announce_role(membership)
    return membership


def _announce_role(membership: Membership) -> None:
    """Tell the member's open pages of this workspace their new role (docs/live-updates.md): sent
    after commit to their own sockets only, which drop it unless it names their workspace."""
    send_after_commit(
        user_group(membership.user_id),
        {"type": "flowdeck.membership", "workspace_id": str(membership.workspace_id), "role": membership.role},
    )


@transaction.atomic
def membership_remove(*, actor: Principal, membership: Membership) -> None:
    """Remove a member (or, when the actor is that member, leave)."""
    leaving = actor.user is not None and membership.user_id == actor.user.pk
    if not leaving:
        authorize(actor, "member:remove", membership.workspace)
        if RANK.get(Role(membership.role), 0) > RANK.get(Role(actor.role), 0):
            raise permission_denied(
                "member:remove", actor.role, "You cannot remove a member whose role is above yours."
            )
    owners = _locked_owners(membership.workspace)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise Conflict(
            "The last Owner cannot leave or be removed; make someone else Owner first, "
            "or delete the workspace (Settings, Delete this workspace).",
            code="last_owner",
        )
    user = membership.user
    membership.delete()
    # Their user keys for this workspace stop working at once.
    ApiKey.objects.for_workspace(membership.workspace).filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    key_cache.bump(membership.workspace_id)  # a bulk update sends no signal
    close_user_sockets(user_id=user.pk, workspace_id=membership.workspace_id)  # C4, after commit
    audit_record(
        workspace=membership.workspace, action="member.left" if leaving else "member.removed", target=user,
        actor=actor, data={"role": membership.role},
    )
