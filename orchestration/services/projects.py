"""Projects group flows: create, rename, restrict and delete them. Names are unique per workspace;
a restricted project is invisible to those it is not shared with (see
:mod:`orchestration.selectors.projects` for who sees which project). Reads are selectors:
``projects_visible_to`` and ``access_project``."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from accounts.authz import Principal, authorize
from accounts.services.audit import audit_record
from core.errors import Conflict, InvalidInput
from orchestration import events
from orchestration.models import FlowRun, Project

MAX_NAME = 100
MAX_DESCRIPTION = 1000


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput("A project needs a name of 1–100 characters.", details={"name": ["Invalid."]})
    return name


def _clean_description(description: str) -> str:
    if len(description or "") > MAX_DESCRIPTION:
        raise InvalidInput("A description is at most 1,000 characters.", details={"description": ["Too long."]})
    return description or ""


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A project named '{name}' already exists.", code="name_taken")


@transaction.atomic
def project_create(*, actor: Principal, name: str, description: str = "", is_restricted: bool = False) -> Project:
    """A new project in the actor's workspace (audited as ``project.created``). Only Owners and
    Admins create it restricted, as only they may restrict one later."""
    authorize(actor, "project:write", actor.workspace)
    if is_restricted:
        _authorize_restriction_change(actor)
    name = _clean_name(name)
    try:
        with transaction.atomic():
            project = Project.objects.unscoped().create(
                workspace=actor.workspace, name=name, description=_clean_description(description),
                is_restricted=is_restricted,
            )
    except IntegrityError:
        raise _name_taken(name) from None
    audit_record(workspace=actor.workspace, action="project.created", target=project, actor=actor,
                 data={"name": name, "is_restricted": is_restricted})
    events.project_created(project)
    return project


def _authorize_restriction_change(actor: Principal) -> None:
    # Restricting or opening a project decides who can see it, the same power as granting and
    # revoking per-object access, so it takes the action that governs those grants
    # ("object_permission:manage", held by Owners and Admins only).
    authorize(actor, "object_permission:manage", actor.workspace)


@transaction.atomic
def project_update(
    *, actor: Principal, project: Project, name: str | None = None, description: str | None = None,
    is_restricted: bool | None = None,
) -> Project:
    """Rename, describe, restrict or open a project. Only Owners and Admins change restriction.
    Audited as ``project.updated`` with the changed fields as ``{field: [old, new]}``."""
    authorize(actor, "project:write", project)
    wanted: dict[str, Any] = {}
    if name is not None:
        wanted["name"] = _clean_name(name)
    if description is not None:
        wanted["description"] = _clean_description(description)
    if is_restricted is not None:
        wanted["is_restricted"] = is_restricted
    changes = {field: [getattr(project, field), value] for field, value in wanted.items()
               if getattr(project, field) != value}
    if "is_restricted" in changes:
        _authorize_restriction_change(actor)
    if not changes:
        return project
    for field, (_old, new) in changes.items():
        setattr(project, field, new)
    try:
        with transaction.atomic():
            project.save(update_fields=list(changes))
    except IntegrityError:
        raise _name_taken(project.name) from None
    audit_record(workspace=actor.workspace, action="project.updated", target=project, actor=actor, data=changes)
    events.project_updated(project)
    return project


@transaction.atomic
def project_delete(*, actor: Principal, project: Project) -> None:
    """Delete a project with its flows, versions, schedules and runs (audited as ``project.deleted``)."""
    authorize(actor, "project:write", project)
    from orchestration.alerts.policies import sla_policies_delete_with_scope  # alerts build on projects

    # The project's SLA policies go first, resolving their open incidents (a cascade would not).
    sla_policies_delete_with_scope(actor, project=project)
    audit_record(workspace=actor.workspace, action="project.deleted", target=project, actor=actor,
                 data={"name": project.name})
    events.project_deleted(project)  # built before the delete clears the pk; sent on commit
    # Runs go first: they PROTECT the versions the project's deletion cascades to.
    FlowRun.objects.for_workspace(actor.workspace).filter(flow__project=project).delete()
    project.delete()
