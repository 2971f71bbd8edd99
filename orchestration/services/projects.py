"""Projects group flows. Names are unique per workspace (C3); a restricted project is invisible to
those it is not shared with (``authorize`` answers NotFound for them)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.authz import NotFound, Principal, authorize
from accounts.models import ApiKey, Role
from core.errors import Conflict, InvalidInput
from core.events import publish
from orchestration.models import FlowRun, Project


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("A project needs a name of 1–100 characters.", details={"name": ["Invalid."]})
    return name


def _clean_description(description: str) -> str:
    if len(description or "") > 1000:
        raise InvalidInput("A description is at most 1,000 characters.", details={"description": ["Too long."]})
    return description or ""


def project_list(*, actor: Principal) -> QuerySet[Project]:
    """The projects the actor can see: restricted ones only for Admins and those granted access."""
    authorize(actor, "project:read", actor.workspace)
    projects = Project.objects.for_workspace(actor.workspace).order_by("name")
    if actor.role in (Role.OWNER, Role.ADMIN):
        return projects
    # Same rule as authorize(): only a person (session or their own key) picks up object grants.
    if actor.user is None or (actor.api_key is not None and actor.api_key.kind != ApiKey.Kind.USER):
        return projects.filter(is_restricted=False)
    shared = get_objects_for_user(
        actor.user, ["orchestration.view_project", "orchestration.manage_project"],
        klass=Project.objects.for_workspace(actor.workspace).filter(is_restricted=True),
        any_perm=True, accept_global_perms=False,
    )
    return projects.filter(Q(is_restricted=False) | Q(pk__in=shared.values("pk")))


def project_get(*, actor: Principal, project_id: Any) -> Project:
    project = Project.objects.for_workspace(actor.workspace).filter(pk=project_id).first()
    if project is None:
        raise NotFound()
    authorize(actor, "project:read", project)
    return project


@transaction.atomic
def project_create(*, actor: Principal, name: str, description: str = "", is_restricted: bool = False) -> Project:
    authorize(actor, "project:write", actor.workspace)
    name = _clean_name(name)
    try:
        with transaction.atomic():
            project = Project.objects.unscoped().create(
                workspace=actor.workspace, name=name, description=_clean_description(description),
                is_restricted=is_restricted,
            )
    except IntegrityError:
        raise Conflict(f"A project named '{name}' already exists.", code="name_taken") from None
    publish(workspace_id=actor.workspace.pk, type="project.created", data={"id": str(project.pk), "name": name})
    return project


@transaction.atomic
def project_update(
    *, actor: Principal, project: Project, name: str | None = None, description: str | None = None,
    is_restricted: bool | None = None,
) -> Project:
    authorize(actor, "project:write", project)
    if is_restricted is not None and is_restricted != project.is_restricted:
        # Restricting or opening a project changes who can see it: that is an Admin's call.
        if actor.role not in (Role.OWNER, Role.ADMIN):
            from accounts.authz import PermissionDenied

            raise PermissionDenied("project:write", actor.role)
        project.is_restricted = is_restricted
    if name is not None:
        project.name = _clean_name(name)
    if description is not None:
        project.description = _clean_description(description)
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError:
        raise Conflict(f"A project named '{project.name}' already exists.", code="name_taken") from None
    publish(workspace_id=actor.workspace.pk, type="project.updated", data={"id": str(project.pk)})
    return project


@transaction.atomic
def project_delete(*, actor: Principal, project: Project) -> None:
    authorize(actor, "project:write", project)
    project_id = str(project.pk)
    # Runs go first: they PROTECT the versions the project's deletion cascades to.
    FlowRun.objects.for_workspace(actor.workspace).filter(flow__project=project).delete()
    project.delete()
    publish(workspace_id=actor.workspace.pk, type="project.deleted", data={"id": project_id})
