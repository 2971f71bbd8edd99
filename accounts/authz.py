"""Who may do what: the one place access is decided.

Every adapter (REST, GraphQL, websockets, admin actions) builds a :class:`Principal` and calls
:func:`authorize` before it calls a service. A role grants a set of actions (:data:`ROLE_ACTIONS`);
django-guardian object permissions widen that per object (a Developer granted ``manage`` on one
service account may mint its keys), and an object marked ``is_restricted`` is narrowed to Admins and
to the people granted ``view`` on it. Another workspace's object is never "forbidden": it does not
exist (:class:`NotFound`), so nothing leaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser
from guardian.shortcuts import get_perms

# The two access errors are defined in core (which renders them without importing an app) and
# re-exported here, where callers have always imported them from.
from core.errors import NotFound, PermissionDenied

from .models import ApiKey, Membership, Role, ServiceAccount, User, Workspace

RANK = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.ADMIN: 3, Role.OWNER: 4}

_READ = {"workspace:read", "member:read", "project:read", "sla:read", "notification_channel:read", "billing:read"}
_DEVELOP = {
    "api_key:create_own",
    "project:write",
    "flow:register",
    "flow_run:create",
    "flow_run:update",
    "log:read",
    "sla:manage",
    "incident:update",
}
_ADMIN = {
    "workspace:update",
    "member:update_role",
    "member:remove",
    "invitation:read",
    "invitation:create",
    "invitation:revoke",
    "service_account:read",
    "service_account:create",
    "service_account:update",
    "service_account:delete",
    "service_account:manage_keys",
    "api_key:read_all",
    "api_key:revoke_any",
    "audit_log:read",
    "object_permission:manage",
    # Notification targets are URLs the server calls (A2): only Admins configure them.
    "notification_channel:manage",
}
_OWNER = {"workspace:delete", "billing:manage"}
# The Agent role is narrow on purpose: register, heartbeat, claim, report. Nothing else.
_AGENT = {"agent:register", "agent:heartbeat", "flow_run:claim", "flow_run:report_state", "log:write"}

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset(_READ | {"log:read"}),
    Role.DEVELOPER: frozenset(_READ | _DEVELOP | _AGENT),
    Role.ADMIN: frozenset(_READ | _DEVELOP | _AGENT | _ADMIN),
    Role.OWNER: frozenset(_READ | _DEVELOP | _AGENT | _ADMIN | _OWNER),
    Role.AGENT: frozenset(_AGENT),
}
ALL_ACTIONS: frozenset[str] = frozenset().union(*ROLE_ACTIONS.values())

# Object-permission levels that widen a role for one object: action -> levels that allow it
# (``manage`` implies ``view``). The guardian codename is ``<level>_<model name>``.
OBJECT_GRANTS: dict[str, tuple[str, ...]] = {
    "service_account:manage_keys": ("manage",),
    "service_account:update": ("manage",),
    "service_account:read": ("view", "manage"),
    "project:write": ("manage",),
    "project:read": ("view", "manage"),
}


@dataclass(frozen=True)
class Principal:
    """Who is acting, in which workspace, with which effective role."""

    workspace: Workspace
    role: str
    user: User | None = None
    service_account: ServiceAccount | None = None
    api_key: ApiKey | None = None
    ip_address: str | None = field(default=None, compare=False)
    # A key taken from the cache whose workspace generation is still to be read
    # (accounts.services.api_keys.api_key_confirm); None once confirmed, and for every other principal.
    unconfirmed: Any = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.email
        if self.service_account is not None:
            return f"service account {self.service_account.name}"
        return "system"


# What each action is, in the words a refusal uses ("Viewers cannot start runs").
ACTION_PHRASES: dict[str, str] = {
    "workspace:read": "see this workspace",
    "workspace:update": "change the workspace's settings",
    "workspace:delete": "delete the workspace",
    "billing:manage": "manage billing",
    "billing:read": "see the plan and usage",
    "member:read": "see the members",
    "member:update_role": "change members' roles",
    "member:remove": "remove members",
    "invitation:read": "see invitations",
    "invitation:create": "invite people",
    "invitation:revoke": "revoke invitations",
    "project:read": "see projects",
    "project:write": "change projects",
    "flow:register": "register flows",
    "flow_run:create": "start runs",
    "flow_run:update": "change runs (cancel, retry, set state)",
    "flow_run:claim": "claim runs",
    "flow_run:report_state": "report run states",
    "log:read": "read logs",
    "log:write": "write logs",
    "agent:register": "register agents",
    "agent:heartbeat": "send agent heartbeats",
    "api_key:create_own": "create API keys",
    "api_key:read_all": "see everyone's API keys",
    "api_key:revoke_any": "revoke other people's API keys",
    "service_account:read": "see service accounts",
    "service_account:create": "create service accounts",
    "service_account:update": "change service accounts",
    "service_account:delete": "delete service accounts",
    "service_account:manage_keys": "manage service-account keys",
    "audit_log:read": "read the audit log",
    "object_permission:manage": "share restricted objects",
    "sla:read": "see SLA policies",
    "sla:manage": "manage SLA policies",
    "incident:update": "acknowledge or resolve incidents",
    "notification_channel:read": "see notification channels",
    "notification_channel:manage": "manage notification channels",
}


def _article(label: str) -> str:
    return "an" if label[:1].lower() in "aeiou" else "a"


def _lowest_role_allowing(action: str) -> str | None:
    for role in sorted(RANK, key=RANK.__getitem__):
        if action in ROLE_ACTIONS[role]:
            return role
    return None


def explain_denial(action: str, role: str | None) -> str:
    """A refusal in plain words: who you are here, what your role cannot do, whom to ask."""
    phrase = ACTION_PHRASES.get(action, f"do this ({action})")
    if role == Role.AGENT:
        return f"Agent keys cannot {phrase}; use a person's or a Developer service account's key."
    if role not in RANK:
        return f"You have no role in this workspace, so you cannot {phrase}."
    label = Role(role).label
    needed = _lowest_role_allowing(action)
    if needed is None or RANK[Role(needed)] <= RANK[Role(role)]:
        # The role allows the action in general; a narrower rule refused this one.
        return f"You are {_article(label)} {label} in this workspace and cannot {phrase} here."
    who = "an Owner" if needed == Role.OWNER else "an Owner or Admin"
    return (
        f"You are {_article(label)} {label} in this workspace; {label}s cannot {phrase}. "
        f"Ask {who} for the {Role(needed).label} role."
    )


def permission_denied(action: str, role: str | None, reason: str | None = None) -> PermissionDenied:
    """The refusal to raise: the action and role for machines, plain words (or ``reason``) for people."""
    exc = PermissionDenied(action, role)
    exc.args = (reason or explain_denial(action, role),)
    return exc


def role_at_most(role: str, ceiling: str) -> str:
    """The lower of two human roles (keys never act above their owner)."""
    if role == Role.AGENT or ceiling == Role.AGENT:
        return Role.AGENT
    return role if RANK[Role(role)] <= RANK[Role(ceiling)] else ceiling


def can_grant_role(granter_role: str, role: str) -> bool:
    """Nobody hands out a role above their own; only Owners make Owners."""
    if role == Role.AGENT:
        return granter_role in (Role.OWNER, Role.ADMIN)
    return granter_role in RANK and RANK[Role(granter_role)] >= RANK[Role(role)]


def principal_for_user(user: User | AnonymousUser, workspace: Workspace, ip_address: str | None = None) -> Principal:
    """The principal for a signed-in user, or NotFound when they are not a member."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise NotFound()
    membership = Membership.objects.filter(workspace=workspace, user=user).only("role").first()
    if membership is None:
        raise NotFound()
    return Principal(workspace=workspace, role=membership.role, user=user, ip_address=ip_address)


def _object_workspace_id(obj: Any) -> Any:
    if isinstance(obj, Workspace):
        return obj.pk
    return getattr(obj, "workspace_id", None)


def authorize(principal: Principal, action: str, obj: Any = None) -> None:
    """Raise unless ``principal`` may do ``action`` (to ``obj``, when given).

    Objects of another workspace raise :class:`NotFound`; an allowed-to-see but not-allowed-to-do
    raises :class:`PermissionDenied`.
    """
    if action not in ALL_ACTIONS:
        raise ValueError(f"Unknown action {action!r}")
    if obj is not None and _object_workspace_id(obj) != principal.workspace.pk:
        raise NotFound()
    allowed = action in ROLE_ACTIONS.get(principal.role, frozenset())
    if obj is None or isinstance(obj, Workspace):
        if not allowed:
            raise permission_denied(action, principal.role)
        return
    # Object permissions cost a query, so they are read only when the role alone does not decide.
    object_perms: set[str] | None = None
    if getattr(obj, "is_restricted", False) and principal.role not in (Role.OWNER, Role.ADMIN):
        object_perms = _object_perms(principal, obj)
        if not any(p.startswith(("view_", "manage_")) for p in object_perms):
            raise NotFound()  # a restricted object is invisible to those it is not shared with
    if allowed:
        return
    if object_perms is None:
        object_perms = _object_perms(principal, obj)
    model_name = obj._meta.model_name
    if any(f"{level}_{model_name}" in object_perms for level in OBJECT_GRANTS.get(action, ())):
        return
    raise permission_denied(action, principal.role)


def can(principal: Principal, action: str, obj: Any = None) -> bool:
    try:
        authorize(principal, action, obj)
    except (NotFound, PermissionDenied):
        return False
    return True


def _object_perms(principal: Principal, obj: Any) -> set[str]:
    if principal.user is None or principal.api_key is not None and principal.api_key.kind != ApiKey.Kind.USER:
        return set()
    return set(get_perms(principal.user, obj))
