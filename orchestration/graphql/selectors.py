"""Read queries behind the orchestration GraphQL fields, always given the viewer's Principal.

Each selector authorizes first (``project:read``, or ``log:read`` for logs) and returns a queryset
filtered to the principal's workspace and to the projects the principal may see: a restricted
project (and its flows and runs) is visible to Owners and Admins and to those granted ``view`` or
``manage`` on it; for everyone else it does not exist. Single-object lookups answer ``NotFound``
for "missing", "another workspace's" and "restricted" alike.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DateTimeField, ExpressionWrapper, Prefetch, Q, QuerySet
from django.db.models.functions import Now, TruncHour
from guardian.shortcuts import get_objects_for_user

from accounts.authz import NotFound, Principal, authorize
from accounts.models import Role
from orchestration.models import (
    Agent,
    Flow,
    FlowRun,
    FlowRunState,
    FlowVersion,
    LogEntry,
    Project,
    Schedule,
    StateType,
    TaskRun,
)

FAILING_STATES = (StateType.FAILED, StateType.CRASHED)


def parse_id(value: Any) -> uuid.UUID:
    """A model id from an ``ID`` argument; anything that is not a UUID is simply not found."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound() from None


def _project_filter(principal: Principal, path: str) -> Q:
    """Rows whose project (reached through ``path``) the principal may see."""
    if principal.role in (Role.OWNER, Role.ADMIN):
        return Q()
    prefix = f"{path}__" if path else ""
    shared: Any = Project.objects.for_workspace(principal.workspace).none()
    if principal.user is not None:
        shared = get_objects_for_user(
            principal.user,
            ["orchestration.view_project", "orchestration.manage_project"],
            klass=Project.objects.for_workspace(principal.workspace).filter(is_restricted=True),
            any_perm=True,
            accept_global_perms=False,
            with_superuser=False,
        ).values("pk")
    return Q(**{f"{prefix}is_restricted": False}) | Q(**{f"{path or 'pk'}__in": shared})


def _read(principal: Principal) -> None:
    authorize(principal, "project:read", principal.workspace)


# --- projects and flows -----------------------------------------------------------------------


def project_list(principal: Principal) -> QuerySet[Project]:
    _read(principal)
    flows = Flow.objects.for_workspace(principal.workspace).filter(is_archived=False).order_by("name")
    return (
        Project.objects.for_workspace(principal.workspace)
        .filter(_project_filter(principal, ""))
        .prefetch_related(Prefetch("flows", queryset=flows))
        .order_by("name")
    )


def flow_get(principal: Principal, flow_id: Any) -> Flow:
    _read(principal)
    flow = (
        Flow.objects.for_workspace(principal.workspace)
        .select_related("project")
        .filter(pk=parse_id(flow_id))
        .first()
    )
    if flow is None:
        raise NotFound()
    authorize(principal, "project:read", flow.project)
    return flow


def flow_active_version(flow: Flow) -> FlowVersion | None:
    """The pinned version, else the newest unarchived one."""
    versions = FlowVersion.objects.for_workspace(flow.workspace_id)
    if flow.pinned_version_id is not None:
        return versions.filter(pk=flow.pinned_version_id).first()
    return versions.filter(flow=flow, is_archived=False).order_by("-version").first()


def flow_version_list(flow: Flow) -> QuerySet[FlowVersion]:
    return FlowVersion.objects.for_workspace(flow.workspace_id).filter(flow=flow).order_by("-version")


def schedule_list(flow: Flow) -> QuerySet[Schedule]:
    return Schedule.objects.for_workspace(flow.workspace_id).filter(flow=flow).order_by("created_at", "id")


# --- runs -------------------------------------------------------------------------------------


def flow_run_list(principal: Principal) -> QuerySet[FlowRun]:
    """Every run the principal may see, newest first, with its flow and agent joined in."""
    _read(principal)
    return (
        FlowRun.objects.for_workspace(principal.workspace)
        .filter(_project_filter(principal, "flow__project"))
        .select_related("flow", "agent", "flow_version")
        .order_by("-created_at", "-id")
    )


def flow_run_get(principal: Principal, flow_run_id: Any) -> FlowRun:
    _read(principal)
    run = (
        FlowRun.objects.for_workspace(principal.workspace)
        .select_related("flow__project", "agent", "flow_version")
        .filter(pk=parse_id(flow_run_id))
        .first()
    )
    if run is None:
        raise NotFound()
    authorize(principal, "project:read", run.flow.project)
    return run


def late_runs(principal: Principal) -> QuerySet[FlowRun]:
    """Scheduled runs whose start time has passed (by the database clock), the latest first."""
    return flow_run_list(principal).filter(state_type=StateType.SCHEDULED, scheduled_start__lt=Now()).order_by(
        "scheduled_start", "id"
    )


def failing_runs(principal: Principal) -> QuerySet[FlowRun]:
    return flow_run_list(principal).filter(state_type__in=FAILING_STATES).order_by("-state_timestamp", "-id")


def upcoming_runs(principal: Principal) -> QuerySet[FlowRun]:
    return flow_run_list(principal).filter(state_type=StateType.SCHEDULED, scheduled_start__gte=Now()).order_by(
        "scheduled_start", "id"
    )


def _since(hours: int) -> ExpressionWrapper:
    return ExpressionWrapper(Now() - timedelta(hours=hours), output_field=DateTimeField())


def counts_by_state(principal: Principal, hours: int) -> list[dict[str, Any]]:
    """How many runs are in each state among those scheduled to start in the last ``hours`` hours
    or later (one grouped query)."""
    rows = (
        flow_run_list(principal)
        .filter(scheduled_start__gte=_since(hours))
        .order_by()
        .values("state_type")
        .annotate(count=Count("id"))
    )
    counts = {row["state_type"]: row["count"] for row in rows}
    return [{"state_type": state, "count": counts[state]} for state in StateType.values if state in counts]


def runs_by_state_over_time(principal: Principal, hours: int) -> list[dict[str, Any]]:
    """Runs per hour (of their scheduled start, UTC) and state over the last ``hours`` hours up to
    now; empty buckets are left out."""
    rows = (
        flow_run_list(principal)
        .filter(scheduled_start__gte=_since(hours), scheduled_start__lte=Now())
        .order_by()
        .annotate(bucket=TruncHour("scheduled_start"))
        .values("bucket", "state_type")
        .annotate(count=Count("id"))
        .order_by("bucket", "state_type")
    )
    return [{"bucket": r["bucket"], "state_type": r["state_type"], "count": r["count"]} for r in rows]


def flow_run_states(run: FlowRun) -> QuerySet[FlowRunState]:
    return FlowRunState.objects.for_workspace(run.workspace_id).filter(flow_run=run).order_by("timestamp", "id")


def task_runs_for(workspace_id: Any, flow_run_ids: list[Any]) -> QuerySet[TaskRun]:
    """Task runs of several flow runs at once (for the DataLoader); RLS and the workspace filter
    keep them to the viewer's workspace."""
    return (
        TaskRun.objects.for_workspace(workspace_id)
        .filter(flow_run_id__in=flow_run_ids)
        .order_by("created_at", "task_key", "map_index")
    )


def log_list(principal: Principal, run: FlowRun) -> QuerySet[LogEntry]:
    authorize(principal, "log:read", principal.workspace)
    return LogEntry.objects.for_workspace(principal.workspace).filter(flow_run=run).order_by("sequence")


# --- agents -----------------------------------------------------------------------------------


def agent_list(principal: Principal) -> QuerySet[Agent]:
    _read(principal)
    return Agent.objects.for_workspace(principal.workspace).order_by("name")


def agent_status(agent: Agent, now: datetime) -> str:
    """healthy / unhealthy / offline, as the agents service decides (one rule for REST and here)."""
    from orchestration.services.agents import agent_status as decide

    return str(decide(agent, now))


# --- bulk actions -----------------------------------------------------------------------------


def bulk_action_get(principal: Principal, bulk_action_id: Any) -> Any:
    """A bulk action of the workspace and its progress (NotFound for any other id)."""
    from orchestration.services.bulk_actions import access_bulk_action

    return access_bulk_action(principal=principal, bulk_action_id=parse_id(bulk_action_id))
