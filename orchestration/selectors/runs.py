"""Flow runs as a principal may see them: the visible set, the one run filter (REST, GraphQL, bulk
actions and services all use :func:`filter_runs`), single-run access and the dashboard's reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    BooleanField,
    Count,
    DateTimeField,
    ExpressionWrapper,
    Prefetch,
    QuerySet,
    prefetch_related_objects,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now, TruncHour

from accounts.authz import ROLE_ACTIONS, NotFound, Principal, authorize
from accounts.models import Role
from core.rows import by_id
from orchestration.models import BulkAction, FlowRun, FlowRunState, FlowVersion, StateType, TaskRun

from .projects import parse_id, visible_projects_q

FAILING_STATES = (StateType.FAILED, StateType.CRASHED)
# What an agent does to a run it holds. Agents may hold runs of restricted projects, so these
# actions are checked against the role in the workspace, not against the run's project.
AGENT_ACTIONS = ROLE_ACTIONS[Role.AGENT]


def runs_visible_to(principal: Principal) -> QuerySet[FlowRun]:
    """Every run in projects the principal may see, newest first, with flow, agent and version
    joined in."""
    authorize(principal, "project:read", principal.workspace)
    return (
        FlowRun.objects.for_workspace(principal.workspace)
        .filter(visible_projects_q(principal, "flow__project"))
        .select_related("flow", "agent", "flow_version")
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class FlowRunFilter:
    """Which runs a list or a bulk action is about. Every field is optional; empty means "any".
    Adapters validate their input (state names, sizes) before building one."""

    flow_id: Any = None
    state_types: Sequence[str] | None = None  # any of these
    state_name: str | None = None
    labels: Sequence[str] | None = None  # all of these
    scheduled_before: datetime | None = None  # scheduled_start < this
    scheduled_after: datetime | None = None  # scheduled_start >= this
    created_by: str | None = None  # user, schedule or api


def filter_runs(runs: QuerySet[FlowRun], f: FlowRunFilter) -> QuerySet[FlowRun]:
    """``runs`` narrowed to those matching ``f`` (a malformed flow id matches nothing)."""
    if f.flow_id is not None:
        try:
            runs = runs.filter(flow_id=parse_id(f.flow_id))
        except NotFound:
            return runs.none()
    if f.state_types:
        runs = runs.filter(state_type__in=list(f.state_types))
    if f.state_name:
        runs = runs.filter(state_name=f.state_name)
    if f.labels:
        runs = with_labels(runs, list(dict.fromkeys(f.labels)))
    if f.scheduled_before is not None:
        runs = runs.filter(scheduled_start__lt=f.scheduled_before)
    if f.scheduled_after is not None:
        runs = runs.filter(scheduled_start__gte=f.scheduled_after)
    if f.created_by:
        runs = runs.filter(created_by_kind=f.created_by)
    return runs


def with_labels(runs: QuerySet[FlowRun], labels: list[str]) -> QuerySet[FlowRun]:
    """Runs carrying every one of ``labels``. PostgreSQL answers with JSONB containment (``@>``, which
    the labels index serves); SQLite has no JSON containment, so each label is one ``EXISTS`` over
    ``json_each`` of the run's labels."""
    if settings.IS_POSTGRES:
        return runs.filter(labels__contains=labels)
    # Only quoted table and column names are interpolated; each label is a bound parameter.
    column = f"{connection.ops.quote_name(FlowRun._meta.db_table)}.{connection.ops.quote_name('labels')}"
    sql = f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = %s)"  # noqa: S608
    for label in labels:
        runs = runs.filter(RawSQL(sql, [label], output_field=BooleanField()))  # noqa: S611
    return runs


def access_flow_run(principal: Principal, flow_run_id: Any, action: str = "project:read") -> FlowRun:
    """The run, if the principal may do ``action`` to it. NotFound for a bad id, a missing run,
    another workspace's, or (for people's actions) one in a restricted project not shared with the
    principal. An agent's actions (report a state, write logs, claim, heartbeat) are checked against
    the role in the workspace only, as agents run restricted projects' runs too."""
    if action in AGENT_ACTIONS:
        authorize(principal, action, principal.workspace)
        run = by_id(FlowRun, principal.workspace, parse_id(flow_run_id))
        if run is None:
            raise NotFound()
        return run
    run = (
        FlowRun.objects.for_workspace(principal.workspace)
        .select_related("flow__project", "agent", "flow_version")
        .filter(pk=parse_id(flow_run_id))
        .first()
    )
    if run is None:
        raise NotFound()
    authorize(principal, action, run.flow.project)
    return run


def agent_flow_run_id(principal: Principal, flow_run_id: Any, action: str) -> uuid.UUID:
    """For an agent action whose service reads the run itself, under a lock (a set-state): the
    checks of :func:`access_flow_run` without reading the run, the id as a UUID. The service's
    read answers 404 for a missing run or another workspace's, as :func:`access_flow_run` would."""
    assert action in AGENT_ACTIONS
    authorize(principal, action, principal.workspace)
    return parse_id(flow_run_id)


def flow_run_detail(principal: Principal, flow_run_id: Any) -> FlowRun:
    """The run with its task runs and its state history (oldest first) loaded, for a run page: the
    run is read once, and the two lists are read only once it is known to be visible."""
    run = access_flow_run(principal, flow_run_id)
    prefetch_related_objects(
        [run],
        Prefetch("task_runs", queryset=task_runs_of_workspace(run.workspace_id)),
        Prefetch("states", queryset=FlowRunState.objects.for_workspace(run.workspace_id).order_by("id")),
    )
    return run


def flow_run_states(run: FlowRun, *, after: int | None = None, limit: int | None = 200) -> list[FlowRunState]:
    """A page of the run's state history, oldest first. The cursor is a state's id: states are
    written under the run's row lock, so their ids grow in the order the run passed through them,
    and ``after`` returns exactly the states a follower has not seen yet. ``limit=None``: all."""
    states = FlowRunState.objects.for_workspace(run.workspace_id).filter(flow_run=run)
    if after is not None:
        states = states.filter(id__gt=after)
    states = states.order_by("id")
    return list(states if limit is None else states[:limit])


def task_runs_of_workspace(workspace_id: Any) -> QuerySet[TaskRun]:
    """A workspace's task runs in the order a run page lists them."""
    return TaskRun.objects.for_workspace(workspace_id).order_by("created_at", "task_key", "map_index")


def task_runs_of(run: FlowRun) -> QuerySet[TaskRun]:
    """The run's task runs, in the order they were created."""
    return task_runs_of_workspace(run.workspace_id).filter(flow_run=run)


def task_runs_for(workspace_id: Any, flow_run_ids: list[Any]) -> QuerySet[TaskRun]:
    """The task runs of several runs of one workspace at once (one query for a page of runs)."""
    return task_runs_of_workspace(workspace_id).filter(flow_run_id__in=flow_run_ids)


def claimed_runs(runs: list[FlowRun]) -> list[FlowRun]:
    """Runs an agent just claimed, in claim order, with what it needs to start them loaded: the
    registered version and the task runs — at most two queries whatever the number of runs, none
    for what the claim already read (its versions; ``has_task_runs=False``: a run with none)."""
    if not runs:
        return runs
    workspace_id = runs[0].workspace_id
    without_version = [run for run in runs if not FlowRun.flow_version.is_cached(run)]
    if without_version:
        prefetch_related_objects(
            without_version, Prefetch("flow_version", queryset=FlowVersion.objects.for_workspace(workspace_id)))
    with_task_runs = []
    for run in runs:
        if getattr(run, "has_task_runs", True):
            with_task_runs.append(run)
        else:  # what the prefetch would have found: nothing, without asking
            cache = run.__dict__.setdefault("_prefetched_objects_cache", {})
            cache["task_runs"] = TaskRun.objects.for_workspace(workspace_id).none()
    if with_task_runs:
        prefetch_related_objects(
            with_task_runs, Prefetch("task_runs", queryset=TaskRun.objects.for_workspace(workspace_id)))
    return runs


def access_bulk_action(principal: Principal, bulk_action_id: Any) -> BulkAction:
    """A bulk action of the principal's workspace; NotFound for a malformed id, a missing one or
    another workspace's alike."""
    authorize(principal, "project:read", principal.workspace)
    bulk = BulkAction.objects.for_workspace(principal.workspace).filter(pk=parse_id(bulk_action_id)).first()
    if bulk is None:
        raise NotFound()
    return bulk


# --- dashboard ----------------------------------------------------------------------------------


def late_runs(principal: Principal) -> QuerySet[FlowRun]:
    """Scheduled runs whose start time has passed (by the database clock), the most overdue first."""
    return runs_visible_to(principal).filter(
        state_type=StateType.SCHEDULED, scheduled_start__lt=Now()
    ).order_by("scheduled_start", "id")


def failing_runs(principal: Principal) -> QuerySet[FlowRun]:
    """Failed and crashed runs, the most recent failure first."""
    return runs_visible_to(principal).filter(state_type__in=FAILING_STATES).order_by("-state_timestamp", "-id")


def upcoming_runs(principal: Principal) -> QuerySet[FlowRun]:
    """Scheduled runs due from now on, the soonest first."""
    return runs_visible_to(principal).filter(
        state_type=StateType.SCHEDULED, scheduled_start__gte=Now()
    ).order_by("scheduled_start", "id")


def _since(hours: int) -> ExpressionWrapper:
    return ExpressionWrapper(Now() - timedelta(hours=hours), output_field=DateTimeField())


def counts_by_state(principal: Principal, hours: int) -> list[dict[str, Any]]:
    """How many runs are in each state among those scheduled to start in the last ``hours`` hours
    or later (one grouped query); states without runs are left out."""
    rows = (
        runs_visible_to(principal)
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
        runs_visible_to(principal)
        .filter(scheduled_start__gte=_since(hours), scheduled_start__lte=Now())
        .order_by()
        .annotate(bucket=TruncHour("scheduled_start"))
        .values("bucket", "state_type")
        .annotate(count=Count("id"))
        .order_by("bucket", "state_type")
    )
    return [{"bucket": r["bucket"], "state_type": r["state_type"], "count": r["count"]} for r in rows]
