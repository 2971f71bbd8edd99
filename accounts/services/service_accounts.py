"""Service accounts: non-human members (agents, CI) with a role of their own."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import key_cache
from accounts.authz import NotFound, Principal, authorize, can_grant_role, permission_denied
from accounts.models import ApiKey, Role, ServiceAccount
from core.errors import Conflict, InvalidInput
from core.live.control import close_service_account_sockets

SERVICE_ACCOUNT_ROLES = (Role.ADMIN, Role.DEVELOPER, Role.VIEWER, Role.AGENT)


def _validate(name: str, role: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("A service account needs a name of 1–100 characters.", details={"name": ["Invalid."]})
    if role not in SERVICE_ACCOUNT_ROLES:
        raise InvalidInput(
            f"'{role}' is not a service-account role; choose one of {', '.join(SERVICE_ACCOUNT_ROLES)}.",
            code="invalid_role",
            details={"role": ["Invalid."]},
        )
    return name


def service_account_get(*, actor: Principal, service_account_id) -> ServiceAccount:
    account = ServiceAccount.objects.for_workspace(actor.workspace).filter(pk=service_account_id).first()
    if account is None:
        raise NotFound()
    authorize(actor, "service_account:read", account)
    return account


@transaction.atomic
def service_account_create(
    *, actor: Principal, name: str, role: str, description: str = "", is_restricted: bool = False
) -> ServiceAccount:
    from .audit import audit_record

    authorize(actor, "service_account:create", actor.workspace)
    name = _validate(name, role)
    if not can_grant_role(actor.role, role):
        raise permission_denied(
            "service_account:create", actor.role, "You can give a service account a role up to your own."
        )
    try:
        with transaction.atomic():
            account = ServiceAccount.objects.unscoped().create(
                workspace=actor.workspace, name=name, role=role, description=description[:500],
                created_by=actor.user, is_restricted=is_restricted,
            )
    except IntegrityError:
        raise Conflict(f"A service account named '{name}' already exists.", code="name_taken") from None
    audit_record(workspace=actor.workspace, action="service_account.created", target=account, actor=actor,
                 data={"role": role})
    return account


@transaction.atomic
def service_account_update(
    *, actor: Principal, account: ServiceAccount, name: str | None = None, role: str | None = None,
    description: str | None = None,
) -> ServiceAccount:
    from .audit import audit_record

    authorize(actor, "service_account:update", account)
    changes: dict = {}
    if role is not None and role != account.role:
        _validate(account.name, role)
        if not can_grant_role(actor.role, role):
            raise permission_denied(
                "service_account:update", actor.role, "You can give a service account a role up to your own."
            )
        changes["role"] = [account.role, role]
        account.role = role
    if name is not None and name.strip() != account.name:
        changes["name"] = [account.name, _validate(name, account.role)]
        account.name = changes["name"][1]
    if description is not None:
        account.description = description[:500]
    try:
        with transaction.atomic():
            account.save()
    except IntegrityError:
        raise Conflict(f"A service account named '{account.name}' already exists.", code="name_taken") from None
    if changes:
        audit_record(workspace=actor.workspace, action="service_account.updated", target=account, actor=actor,
                     data=changes)
    return account


@transaction.atomic
def service_account_delete(*, actor: Principal, account: ServiceAccount) -> None:
    """Deactivate the account and revoke all its keys (rows stay for the audit trail)."""
    from .audit import audit_record

    authorize(actor, "service_account:delete", account)
    now = timezone.now()
    ApiKey.objects.for_workspace(actor.workspace).filter(service_account=account, revoked_at__isnull=True).update(
        revoked_at=now
    )
    key_cache.bump(account.workspace_id)  # a bulk update sends no signal
    account.is_active = False
    account.save(update_fields=["is_active"])
    close_service_account_sockets(service_account_id=account.pk)  # C4, after commit
    audit_record(workspace=actor.workspace, action="service_account.deleted", target=account, actor=actor)
