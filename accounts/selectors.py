"""Read queries for accounts data, always given the workspace (or the user, for their own list)."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.authz import NotFound, Principal, authorize, can
from accounts.models import ApiKey, AuditLogEntry, Invitation, Membership, ServiceAccount, User, Workspace


def workspace_list_for_user(user: User) -> QuerySet[Workspace]:
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def workspace_get_for_user(user: User, slug: str) -> Workspace:
    """The workspace a member asks for by slug; NotFound for non-members and missing slugs alike."""
    workspace = Workspace.objects.filter(slug=slug, memberships__user=user).first() if user.is_authenticated else None
    if workspace is None:
        raise NotFound()
    return workspace


def membership_list(principal: Principal) -> QuerySet[Membership]:
    authorize(principal, "member:read", principal.workspace)
    return Membership.objects.filter(workspace=principal.workspace).select_related("user").order_by("created_at", "id")


def membership_get(principal: Principal, membership_id) -> Membership:
    authorize(principal, "member:read", principal.workspace)
    membership = (
        Membership.objects.filter(workspace=principal.workspace, pk=membership_id)
        .select_related("user", "workspace")
        .first()
    )
    if membership is None:
        raise NotFound()
    return membership


def invitation_list(principal: Principal) -> QuerySet[Invitation]:
    authorize(principal, "invitation:read", principal.workspace)
    return Invitation.objects.for_workspace(principal.workspace).select_related("invited_by")


def service_account_list(principal: Principal) -> QuerySet[ServiceAccount]:
    """Service accounts the principal may see: all of them for roles that read service accounts,
    otherwise those shared with the person through an object grant (one query either way)."""
    accounts = ServiceAccount.objects.for_workspace(principal.workspace).filter(is_active=True)
    if can(principal, "service_account:read", principal.workspace):
        return accounts
    if principal.user is None or principal.api_key is not None and principal.api_key.kind != ApiKey.Kind.USER:
        return accounts.none()
    shared = get_objects_for_user(
        principal.user, ["accounts.view_serviceaccount", "accounts.manage_serviceaccount"], klass=accounts,
        any_perm=True, accept_global_perms=False, with_superuser=False,
    )
    return shared


def api_key_list(principal: Principal) -> QuerySet[ApiKey]:
    """Admins see every key; others see their own personal keys."""
    qs = ApiKey.objects.for_workspace(principal.workspace).select_related("user", "service_account")
    if can(principal, "api_key:read_all", principal.workspace):
        return qs
    return qs.filter(kind=ApiKey.Kind.USER, user=principal.user)


#: The audit log's areas, to read one at a time: each is the action prefixes it covers.
AUDIT_LOG_AREAS: dict[str, tuple[str, ...]] = {
    "workspace": ("workspace.",),
    "members": ("member.", "invitation.", "object_permission."),
    "keys": ("api_key.", "service_account."),
    "projects": ("project.",),
    "flows": ("flow.",),
    "schedules": ("schedule.",),
    "runs": ("bulk_action.",),
    "limits": ("concurrency_limit.",),
    "alerts": ("sla_policy.", "notification_channel.", "incident."),
}


def audit_log_list(principal: Principal, *, area: str | None = None) -> QuerySet[AuditLogEntry]:
    """The workspace's audit log, optionally one area of it (a key of :data:`AUDIT_LOG_AREAS`)."""
    authorize(principal, "audit_log:read", principal.workspace)
    entries = AuditLogEntry.objects.for_workspace(principal.workspace)
    if area:
        prefixes = Q()
        for prefix in AUDIT_LOG_AREAS[area]:
            prefixes |= Q(action__startswith=prefix)
        entries = entries.filter(prefixes)
    return entries
