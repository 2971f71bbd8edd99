"""Flow runs as a principal may see them: the visible set, the one run filter (REST, GraphQL, bulk
actions and services all use :func:`filter_runs`), single-run access and the dashboard's reads."""

from __future__ import annotations

import functools
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
from orchestration.models import Agent, BulkAction, FlowRun, FlowRunState, FlowVersion, StateType, TaskRun, TaskRunState

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
    tags: Sequence[str] | None = None  # a task run carrying each of these tags
    # SCHEDULED runs (due or not, AwaitingRetry included) that no healthy agent can take: none
    # carries all of the run's labels. Needs ``filter_runs``' ``workspace``.
    without_live_agent: bool = False
    parent_flow_run_id: Any = None  # the child runs this run started (flow of flows)


def filter_runs(runs: QuerySet[FlowRun], f: FlowRunFilter, *, workspace: Any = None) -> QuerySet[FlowRun]:
    """``runs`` (of ``workspace``) narrowed to those matching ``f`` (a malformed flow id matches
    nothing)."""
    if f.flow_id is not None:
        try:
            runs = runs.filter(flow_id=parse_id(f.flow_id))
        except NotFound:
            return runs.none()
    if f.parent_flow_run_id is not None:
        try:
            runs = runs.filter(parent_flow_run_id=parse_id(f.parent_flow_run_id))
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
    if f.tags:
        runs = with_task_tags(runs, list(dict.fromkeys(f.tags)))
    if f.without_live_agent:
        if workspace is None:
            raise ValueError("without_live_agent needs the runs' workspace")
        runs = without_live_agent(runs, live_label_sets(workspace))
    return runs


def _labels_column() -> str:
    return f"{connection.ops.quote_name(FlowRun._meta.db_table)}.{connection.ops.quote_name('labels')}"


def with_labels(runs: QuerySet[FlowRun], labels: list[str]) -> QuerySet[FlowRun]:
    """Runs carrying every one of ``labels``. PostgreSQL answers with JSONB containment (``@>``, which
    the labels index serves); SQLite has no JSON containment, so each label is one ``EXISTS`` over
    ``json_each`` of the run's labels."""
    if settings.IS_POSTGRES:
        return runs.filter(labels__contains=labels)
    # Only quoted table and column names are interpolated; each label is a bound parameter.
    sql = f"EXISTS (SELECT 1 FROM json_each({_labels_column()}) WHERE json_each.value = %s)"  # noqa: S608
    for label in labels:
        runs = runs.filter(RawSQL(sql, [label], output_field=BooleanField()))  # noqa: S611
    return runs


def with_task_tags(runs: QuerySet[FlowRun], tags: list[str]) -> QuerySet[FlowRun]:
    """Runs with, for each of ``tags``, a task run carrying it (one ``EXISTS`` per tag over the
    run's task runs, which the task-run key constraint indexes by run)."""
    quote = connection.ops.quote_name
    task_runs, run_id = quote(TaskRun._meta.db_table), f"{quote(FlowRun._meta.db_table)}.{quote('id')}"
    if settings.IS_POSTGRES:
        match = "t.tags @> jsonb_build_array(%s::text)"
    else:
        match = "EXISTS (SELECT 1 FROM json_each(t.tags) WHERE json_each.value = %s)"
    # Only quoted table and column names are interpolated; each tag is a bound parameter.
    sql = f"EXISTS (SELECT 1 FROM {task_runs} t WHERE t.flow_run_id = {run_id} AND {match})"  # noqa: S608
    for tag in tags:
        runs = runs.filter(RawSQL(sql, [tag], output_field=BooleanField()))  # noqa: S611
    return runs


def live_label_sets(workspace: Any, now: datetime | None = None) -> list[frozenset[str]]:
    """The label sets of the workspace's healthy agents, each once: a run is claimable now when
    its labels are a subset of one of them (agents take runs whose labels they all carry)."""
    from orchestration.engine import db_now
    from orchestration.services.agents import HEALTHY, agent_status  # the liveness rule lives there

    now = now or db_now()
    agents = Agent.objects.for_workspace(workspace)  # whole rows: the liveness rule reads what it needs
    return list(dict.fromkeys(frozenset(a.labels) for a in agents if agent_status(a, now) == HEALTHY))


def without_live_agent(runs: QuerySet[FlowRun], live_sets: list[frozenset[str]]) -> QuerySet[FlowRun]:
    """SCHEDULED runs whose labels no set of ``live_sets`` (see :func:`live_label_sets`) covers."""
    runs = runs.filter(state_type=StateType.SCHEDULED)
    for labels in live_sets:
        if settings.IS_POSTGRES:
            runs = runs.exclude(labels__contained_by=sorted(labels))
            continue
        # SQLite has no JSON containment: covered = no label of the run outside the set.
        outside = f"json_each.value NOT IN ({', '.join(['%s'] * len(labels))})" if labels else "1"
        sql = f"NOT EXISTS (SELECT 1 FROM json_each({_labels_column()}) WHERE {outside})"  # noqa: S608
        runs = runs.exclude(RawSQL(sql, sorted(labels), output_field=BooleanField()))  # noqa: S611
    return runs


def no_live_agent_reason(run: FlowRun, live_sets: list[frozenset[str]]) -> str | None:
    """Why no agent takes a SCHEDULED run now, in words for the run's page and list; None when some
    healthy agent covers its labels, or the run is not waiting for one."""
    if run.state_type != StateType.SCHEDULED or any(set(run.labels) <= labels for labels in live_sets):
        return None
    if not live_sets:
        return "No healthy agent is connected to this workspace: start one with `flowdeck agent start`."
    flags = " ".join(f"--label {label}" for label in sorted(run.labels))
    return (f"No healthy agent carries all of this run's labels ({', '.join(sorted(run.labels))}): "
            f"start one with `flowdeck agent start {flags}`.")


def access_flow_run(principal: Principal, flow_run_id: Any, action: str = "project:read") -> FlowRun:
    """The run, if the principal may do ``action`` to it. NotFound for a bad id, a missing run,
    another workspace's, or (for people's actions) one in a restricted project not shared with the
    principal. An agent's actions (report a state, write logs, claim, heartbeat) are checked against
    the role in the workspace only, as agents run restricted projects' runs too."""
    if action in AGENT_ACTIONS:
        authorize(principal, action, principal.workspace)
        # The agents' services lock and read what they change themselves: this read is the access
        # check, and its run the id and workspace (the rest deferred, read if ever used).
        run = by_id(FlowRun, principal.workspace, parse_id(flow_run_id), only=("workspace",))
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


def access_task_run(run: FlowRun, task_run_id: Any) -> TaskRun:
    """One task run of ``run`` (already checked visible with :func:`access_flow_run`). NotFound for a
    malformed id, a missing one, or a task run of another run or workspace alike."""
    task_run = task_runs_of(run).filter(pk=parse_id(task_run_id)).first()
    if task_run is None:
        raise NotFound()
    return task_run


def task_run_states_for(workspace_id: Any, task_run_ids: list[Any]) -> QuerySet[TaskRunState]:
    """The state histories of several task runs of one workspace at once, each oldest first (state
    ids grow in the order a task run passed through them, as for flow runs)."""
    return TaskRunState.objects.for_workspace(workspace_id).filter(task_run_id__in=task_run_ids).order_by("id")


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
            run.__dict__.setdefault("_prefetched_objects_cache", {})["task_runs"] = _no_task_runs()
    if with_task_runs:
        prefetch_related_objects(
            with_task_runs, Prefetch("task_runs", queryset=TaskRun.objects.for_workspace(workspace_id)))
    return runs


@functools.cache
def _no_task_runs() -> QuerySet:
    """An empty queryset of task runs already evaluated, as a prefetch leaves it: iterating it (the
    reply's serializer does) compiles no SQL, which even ``.none()`` does. One is shared by every
    claimed run without task runs: it can never hold or fetch a row (``.none()``, so no workspace
    to scope it to), and building one per run was 2 % of a busy server's CPU."""
    queryset = TaskRun.all_objects.none()
    queryset._result_cache = []
    queryset._prefetch_done = True  # type: ignore[attr-defined]
    return queryset


def visible_runs_by_id(principal: Principal, run_ids: Sequence[Any]) -> dict[Any, FlowRun]:
    """The runs among ``run_ids`` the principal may see, by id, in one query (a page's parent runs);
    an id of another workspace or of a hidden project is simply left out."""
    return {run.pk: run for run in runs_visible_to(principal).filter(pk__in=list(run_ids))}


def visible_child_runs(principal: Principal, parent_ids: Sequence[Any], first: int) -> dict[Any, list[FlowRun]]:
    """The newest ``first`` child runs (flow of flows) of each of ``parent_ids`` that the principal
    may see, newest first, in one query whatever the number of parents (a window per parent)."""
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    runs = runs_visible_to(principal).filter(parent_flow_run_id__in=list(parent_ids)).annotate(
        child_rank=Window(RowNumber(), partition_by=[F("parent_flow_run_id")],
                          order_by=[F("created_at").desc(), F("id").desc()]),
    ).filter(child_rank__lte=first)
    found: dict[Any, list[FlowRun]] = {parent_id: [] for parent_id in parent_ids}
    for run in runs:
        found.setdefault(run.parent_flow_run_id, []).append(run)
    return found


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
