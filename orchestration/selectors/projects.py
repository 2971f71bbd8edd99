"""Which projects a principal may see: the one rule every read of orchestration goes through.

Owners and Admins see every project of their workspace. A person (signed in, or through their own
user-kind API key) also sees the restricted projects they were granted ``view`` or ``manage`` on.
Everyone else (service-account keys, agents) sees unrestricted projects only: a service-account key
does not pick up the grants of the user who made it. This is the rule ``accounts.authz.authorize``
applies to one object; here it is written as a query so lists need no per-row check.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.authz import NotFound, Principal, authorize
from accounts.models import ApiKey, Role
from orchestration.models import Flow, FlowRun, Project, Schedule

PROJECT_GRANTS = ("orchestration.view_project", "orchestration.manage_project")


def parse_id(value: Any) -> uuid.UUID:
    """The id as a UUID; anything that is not one names no object, so it is NotFound."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        raise NotFound() from None


def sees_all_projects(principal: Principal) -> bool:
    """Owners and Admins see restricted projects without a grant."""
    return principal.role in (Role.OWNER, Role.ADMIN)


def acts_as_person(principal: Principal) -> bool:
    """Whether object grants count for this principal: a session, or a person's own API key (the
    same test ``authorize`` makes before reading guardian permissions)."""
    if principal.user is None:
        return False
    return principal.api_key is None or principal.api_key.kind == ApiKey.Kind.USER


def visible_projects_q(principal: Principal, path: str) -> Q:
    """A filter for rows whose project, reached through ``path`` ("" for projects themselves,
    "project" for flows, "flow__project" for runs), the principal may see. The grants are a
    subquery, so the filter adds no query of its own."""
    if sees_all_projects(principal):
        return Q()
    unrestricted = Q(**{f"{path}__is_restricted" if path else "is_restricted": False})
    if not acts_as_person(principal):
        return unrestricted
    shared = get_objects_for_user(
        principal.user,
        list(PROJECT_GRANTS),
        klass=Project.objects.for_workspace(principal.workspace).filter(is_restricted=True),
        any_perm=True,
        accept_global_perms=False,
    ).values("pk")
    return unrestricted | Q(**{f"{path}__in" if path else "pk__in": shared})


def projects_visible_to(principal: Principal, action: str = "project:read") -> QuerySet[Project]:
    """The projects of the principal's workspace it may see, by name."""
    authorize(principal, action, principal.workspace)
    return (
        Project.objects.for_workspace(principal.workspace)
        .filter(visible_projects_q(principal, ""))
        .order_by("name", "id")
    )


def projects_with_flows(principal: Principal) -> QuerySet[Project]:
    """The projects the principal may see, by name, each with its unarchived flows (by name) loaded
    in one more query."""
    flows = Flow.objects.for_workspace(principal.workspace).filter(is_archived=False).order_by("name", "id")
    return projects_visible_to(principal).prefetch_related(Prefetch("flows", queryset=flows))


def access_project(principal: Principal, project_id: Any, action: str = "project:read") -> Project:
    """The project, if the principal may do ``action`` to it. A bad id, a missing project, another
    workspace's or a restricted one not shared with the principal are all NotFound."""
    project = Project.objects.for_workspace(principal.workspace).filter(pk=parse_id(project_id)).first()
    if project is None:
        raise NotFound()
    authorize(principal, action, project)
    return project


def hidden_projects(principal: Principal) -> set[str]:
    """The ids (as strings) of the workspace's restricted projects the principal may not see: none
    for Owners and Admins. A live socket leaves out the events about these."""
    if sees_all_projects(principal):
        return set()
    hidden = (
        Project.objects.for_workspace(principal.workspace)
        .filter(is_restricted=True)
        .exclude(pk__in=projects_visible_to(principal).values("pk"))
        .values_list("pk", flat=True)
    )
    return {str(pk) for pk in hidden}


# Where each kind of event subject finds its project.
_PROJECT_PATHS = {"flow": (Flow, "project_id"), "run": (FlowRun, "flow__project_id"),
                  "schedule": (Schedule, "flow__project_id")}


def project_id_of(workspace_id: Any, kind: str, ident: Any) -> str | None:
    """The id (as a string) of the project a flow, run or schedule (``kind``) of the workspace
    belongs to; None for a malformed id or a subject that is gone."""
    model, path = _PROJECT_PATHS[kind]
    try:
        pk = parse_id(ident)
    except NotFound:
        return None
    project = model.objects.for_workspace(workspace_id).filter(pk=pk).values_list(path, flat=True).first()
    return None if project is None else str(project)
