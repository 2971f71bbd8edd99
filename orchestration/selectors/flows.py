"""Flows, their versions and schedules as a principal may see them, and which version a new run
uses."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.authz import NotFound, Principal, authorize
from orchestration.models import Flow, FlowVersion, Schedule

from .projects import parse_id, visible_projects_q


def flows_visible_to(principal: Principal, *, project_id: Any = None, name: str | None = None) -> QuerySet[Flow]:
    """The flows in projects the principal may see, by name; optionally of one project or with one
    name (a malformed project id matches nothing)."""
    authorize(principal, "project:read", principal.workspace)
    flows = Flow.objects.for_workspace(principal.workspace).filter(visible_projects_q(principal, "project"))
    if project_id is not None:
        try:
            flows = flows.filter(project_id=parse_id(project_id))
        except NotFound:
            return flows.none()
    if name:
        flows = flows.filter(name=name)
    return flows.select_related("project").order_by("name", "id")


def access_flow(principal: Principal, flow_id: Any, action: str = "project:read") -> Flow:
    """The flow, if the principal may do ``action`` to its project; NotFound for a bad id, a missing
    flow, another workspace's, or one in a restricted project not shared with the principal."""
    flows = Flow.objects.for_workspace(principal.workspace).select_related("project")
    flow = flows.filter(pk=parse_id(flow_id)).first()
    if flow is None:
        raise NotFound()
    authorize(principal, action, flow.project)
    return flow


def flow_version_for_new_run(flow: Flow) -> FlowVersion | None:
    """The version a new run of ``flow`` uses: the pinned one, else the newest unarchived one; None
    when there is neither (callers that need one answer Conflict ``no_active_version``)."""
    versions = FlowVersion.objects.for_workspace(flow.workspace_id)
    if flow.pinned_version_id is not None:
        return versions.filter(pk=flow.pinned_version_id).first()
    return versions.filter(flow=flow, is_archived=False).order_by("-version").first()


def flow_versions(flow: Flow) -> QuerySet[FlowVersion]:
    """Every version of ``flow``, newest first (archived ones included)."""
    return FlowVersion.objects.for_workspace(flow.workspace_id).filter(flow=flow).order_by("-version")


def access_flow_version(principal: Principal, flow: Flow, version_id: Any) -> FlowVersion:
    """One version of ``flow`` (already accessed by the caller), or NotFound."""
    version = (
        FlowVersion.objects.for_workspace(principal.workspace).filter(flow=flow, pk=parse_id(version_id)).first()
    )
    if version is None:
        raise NotFound()
    return version


def flow_schedules(flow: Flow) -> QuerySet[Schedule]:
    """The schedules of ``flow``, oldest first."""
    return Schedule.objects.for_workspace(flow.workspace_id).filter(flow=flow).order_by("created_at", "id")


def access_schedule(principal: Principal, flow: Flow, schedule_id: Any) -> Schedule:
    """One schedule of ``flow`` (already accessed by the caller), or NotFound."""
    schedule = Schedule.objects.for_workspace(principal.workspace).filter(flow=flow, pk=parse_id(schedule_id)).first()
    if schedule is None:
        raise NotFound()
    return schedule
