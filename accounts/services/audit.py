"""The audit log: who changed which access, when, and from where."""

from __future__ import annotations

from typing import Any

from accounts.authz import Principal
from accounts.models import AuditLogEntry, User, Workspace


def audit_record(
    *,
    workspace: Workspace,
    action: str,
    target: Any,
    actor: Principal | None = None,
    actor_user: User | None = None,
    ip_address: str | None = None,
    data: dict | None = None,
    target_label: str | None = None,
) -> AuditLogEntry:
    """Append one entry. ``actor`` is the principal; ``actor_user`` serves flows with no principal
    yet (signing up, accepting an invitation). ``target_label`` replaces ``str(target)`` when that
    would not read well in the log (an id, say)."""
    user = actor.user if actor else actor_user
    service_account = actor.service_account if actor else None
    label = actor.label if actor else (actor_user.email if actor_user else "system")
    return AuditLogEntry.objects.unscoped().create(
        workspace=workspace,
        actor_user=user,
        actor_service_account=service_account,
        actor_label=label,
        action=action,
        target_type=target._meta.model_name if hasattr(target, "_meta") else str(target),
        target_id=str(getattr(target, "pk", "")),
        target_label=(str(target) if target_label is None else target_label)[:254],
        data=data or {},
        ip_address=(actor.ip_address if actor else None) or ip_address,
    )
