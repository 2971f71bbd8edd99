"""Read queries for accounts data, always given the workspace (or the user, for their own list)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from accounts.authz import NotFound, Principal, authorize, can
from accounts.models import ApiKey, AuditLogEntry, Invitation, Membership, ServiceAccount, User, Workspace
from core.tenancy import workspace_scope


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


def active_personal_api_keys(
    user: User, workspaces: list[Workspace], *, now: datetime | None = None
) -> QuerySet[ApiKey]:
    """The person's own keys that still work, in these workspaces (theirs: the caller has the RLS
    scope on them). Service-account keys belong to their workspace and are never included."""
    now = now or timezone.now()
    # One query across the person's own workspaces, not one per workspace.
    return ApiKey.objects.unscoped().filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        workspace__in=[w.pk for w in workspaces], kind=ApiKey.Kind.USER, user=user, revoked_at__isnull=True,
    )


@dataclass(frozen=True)
class PersonalKeyCount:
    workspace: Workspace
    active_api_keys: int


def personal_api_key_counts(user: User) -> list[PersonalKeyCount]:
    """How many personal keys that still work the person has in each of their workspaces (those
    with none are left out): what signing out everywhere would revoke."""
    workspaces = list(workspace_list_for_user(user))
    if not workspaces:
        return []
    with workspace_scope([w.pk for w in workspaces]):
        counts = dict(
            active_personal_api_keys(user, workspaces).order_by().values("workspace_id")
            .annotate(n=Count("id")).values_list("workspace_id", "n")
        )
    return [PersonalKeyCount(workspace=w, active_api_keys=counts[w.pk]) for w in workspaces if counts.get(w.pk)]


#: The audit log's areas, to read one at a time: each is the action prefixes it covers.
AUDIT_LOG_AREAS: dict[str, tuple[str, ...]] = {
    "workspace": ("workspace.",),
    "members": ("member.", "invitation.", "object_permission."),
    # account.signed_out_everywhere: a member revoked all their personal keys (and signed out).
    "keys": ("api_key.", "service_account.", "account."),
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
