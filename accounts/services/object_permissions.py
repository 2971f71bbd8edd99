"""Per-object grants (django-guardian) that widen or unlock access to one object for one member."""

from __future__ import annotations

from django.db import transaction
from guardian.shortcuts import assign_perm, get_users_with_perms, remove_perm

from accounts.authz import NotFound, Principal, authorize
from accounts.models import Membership, User

from .audit import audit_record

LEVELS = ("view", "manage")


def _codename(level: str, obj) -> str:
    if level not in LEVELS:
        from core.errors import InvalidInput

        raise InvalidInput("The permission is 'view' or 'manage'.", code="invalid_permission")
    return f"{level}_{obj._meta.model_name}"


@transaction.atomic
def object_permission_grant(*, actor: Principal, obj, user: User, level: str) -> None:
    authorize(actor, "object_permission:manage", obj)
    if not Membership.objects.filter(workspace=actor.workspace, user=user).exists():
        raise NotFound()
    assign_perm(_codename(level, obj), user, obj)
    audit_record(workspace=actor.workspace, action="object_permission.granted", target=obj, actor=actor,
                 data={"user": user.email, "level": level})


@transaction.atomic
def object_permission_revoke(*, actor: Principal, obj, user: User, level: str) -> None:
    authorize(actor, "object_permission:manage", obj)
    remove_perm(_codename(level, obj), user, obj)
    audit_record(workspace=actor.workspace, action="object_permission.revoked", target=obj, actor=actor,
                 data={"user": user.email, "level": level})


def object_permission_list(*, actor: Principal, obj) -> dict[User, list[str]]:
    authorize(actor, "object_permission:manage", obj)
    grants: dict[User, list[str]] = get_users_with_perms(  # type: ignore[assignment]
        obj, attach_perms=True, with_superusers=False, with_group_users=False
    )
    return grants
