"""GraphQL object types for orchestration. Fields are listed explicitly.

The root is :class:`OrchestrationType`, reached through ``orchestration(workspace: String!)``; its
source is the viewer's :class:`~accounts.authz.Principal` in that workspace, and every field below
reads through :mod:`orchestration.selectors` with it (the same reads as REST). A list or object the viewer may not
read is null with the error's code (``not_found``, ``permission_denied``) on that field; an id that
is missing, malformed, another workspace's or in a restricted project is simply null.

Paging: ``flowRuns`` is a cursor connection (newest first); other lists take ``first``. Arguments
out of range answer ``invalid_argument`` and a cursor this API did not give out ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timedelta
from typing import Any

import graphene
from django.db.models import Q
from graphene.types.generic import GenericScalar
from graphql import GraphQLError

from accounts.authz import NotFound, Principal, authorize
from accounts.graphql.context import get_context
from accounts.graphql.errors import EXPECTED_ERRORS, graphql_error
from orchestration import schedules as timemaths
from orchestration import selectors
from orchestration.models import Agent, Flow, FlowRun, Schedule, StateType, TaskRun
from orchestration.selectors import FlowRunFilter
from orchestration.services.agents import agent_status
from orchestration.services.logs import logs_list

from .dataloaders import loaders

DEFAULT_PAGE = 25
MAX_PAGE = 100
MAX_LOG_PAGE = 1000
MAX_LOG_SEARCH = 200
DEFAULT_HOURS = 24
MAX_HOURS = 24 * 14
MAX_FILTER_ITEMS = 50
MAX_OFFSET = 10_000
DEFAULT_NEXT_RUNS = 5
MAX_NEXT_RUNS = 50
NEXT_RUNS_WINDOW = timedelta(days=400)  # as far ahead as orchestration.schedules.next_occurrence looks


def _invalid(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "invalid_argument"})


def _page(first: int | None, default: int = DEFAULT_PAGE, limit: int = MAX_PAGE) -> int:
    first = default if first is None else first
    if not 0 <= first <= limit:
        raise _invalid(f"'first' must be between 0 and {limit}.")
    return first


def _hours(hours: int | None) -> int:
    hours = DEFAULT_HOURS if hours is None else hours
    if not 1 <= hours <= MAX_HOURS:
        raise _invalid(f"'hours' must be between 1 and {MAX_HOURS}.")
    return hours


def _reading(fn: Any, *args: Any) -> Any:
    """Run a selector; an expected refusal becomes this field's error."""
    try:
        return fn(*args)
    except EXPECTED_ERRORS as exc:
        raise graphql_error(exc) from None


def _maybe(fn: Any, *args: Any) -> Any:
    """Like :func:`_reading`, but "not found" is a plain null (ids of other workspaces included)."""
    try:
        return fn(*args)
    except NotFound:
        return None
    except EXPECTED_ERRORS as exc:
        raise graphql_error(exc) from None


# --- Leaf types -------------------------------------------------------------------------------


# These two are read from dicts (the dashboard selectors' rows): graphene's default resolver reads
# a dict's keys as it reads an object's attributes.
class StateCountType(graphene.ObjectType):
    class Meta:
        name = "StateCount"

    state_type = graphene.String(required=True)
    count = graphene.Int(required=True)


class StateBucketType(graphene.ObjectType):
    class Meta:
        name = "StateBucket"

    bucket = graphene.DateTime(required=True, description="The start of the hour (UTC).")
    state_type = graphene.String(required=True)
    count = graphene.Int(required=True)


class _ReferenceType(graphene.ObjectType):
    """Names another object: its id and its name."""

    class Meta:
        abstract = True

    id = graphene.ID(required=True)
    name = graphene.String(required=True)


class ProjectRefType(_ReferenceType):
    class Meta:
        name = "ProjectRef"


class FlowRefType(_ReferenceType):
    class Meta:
        name = "FlowRef"


class BulkActionType(graphene.ObjectType):
    """A bulk action on runs (cancel, clear_late, mark) and its progress; the counts move with each
    batch (live: ``bulk_action.progress`` events). Once finished, done + skipped + failed = matched."""

    class Meta:
        name = "BulkAction"

    id = graphene.ID(required=True)
    action = graphene.String(required=True)
    status = graphene.String(required=True, description="pending, running, finished or failed.")
    matched = graphene.Int(required=True, description="Runs the filter matched when it started.")
    done = graphene.Int(required=True, description="Runs changed.")
    skipped = graphene.Int(required=True, description="Runs that no longer matched (they moved on meanwhile).")
    failed = graphene.Int(required=True, description="Runs the orchestration rules refused.")
    error = graphene.String(required=True)
    created_at = graphene.DateTime(required=True)
    started_at = graphene.DateTime()
    finished_at = graphene.DateTime()


class AgentType(graphene.ObjectType):
    class Meta:
        name = "Agent"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    type = graphene.String(required=True, description="process, docker or kubernetes.")
    labels = graphene.List(graphene.NonNull(graphene.String), required=True)
    version = graphene.String(required=True)
    poll_interval_seconds = graphene.Int(required=True)
    status = graphene.String(
        required=True,
        description="healthy; unhealthy (heartbeats but its claim loop stopped polling); offline (no heartbeat); "
        "stopped (it shut down cleanly).",
    )
    created_at = graphene.DateTime(required=True)
    last_heartbeat_at = graphene.DateTime()
    last_poll_at = graphene.DateTime()
    service_account_id = graphene.ID(description="The service account whose key registered the agent.")

    @staticmethod
    def resolve_service_account_id(agent: Agent, info: Any) -> str | None:
        return None if agent.service_account_id is None else str(agent.service_account_id)

    @staticmethod
    def resolve_status(agent: Agent, info: Any) -> str:
        return str(agent_status(agent, loaders(info).now()))


class AgentRefType(_ReferenceType):
    class Meta:
        name = "AgentRef"


class FlowVersionType(graphene.ObjectType):
    """What the SDK registered for one version: the DAG, parameters, storage reference… never code."""

    class Meta:
        name = "FlowVersion"

    id = graphene.ID(required=True)
    version = graphene.Int(required=True)
    created_at = graphene.DateTime(required=True)
    is_archived = graphene.Boolean(required=True)
    registered_by = graphene.String(required=True)
    tasks = GenericScalar(required=True, description='[{"key", "name", "tags", "retries", …}]')
    edges = GenericScalar(required=True, description='[{"upstream", "downstream", "key"}]')
    parameters = GenericScalar(required=True, description='[{"name", "type", "default", "required"}]')
    labels = GenericScalar(required=True)
    storage = GenericScalar(required=True)
    run_config = GenericScalar(required=True)
    schedule = GenericScalar()


class ScheduleType(graphene.ObjectType):
    class Meta:
        name = "Schedule"

    id = graphene.ID(required=True)
    kind = graphene.String(required=True, description="interval, cron or rrule.")
    cron = graphene.String(required=True)
    interval_seconds = graphene.Int()
    rrule = graphene.String(required=True)
    timezone = graphene.String(required=True)
    start_date = graphene.DateTime()
    end_date = graphene.DateTime()
    parameters = GenericScalar(required=True)
    is_active = graphene.Boolean(required=True)
    next_runs = graphene.List(
        graphene.NonNull(graphene.DateTime), required=True, first=graphene.Int(default_value=DEFAULT_NEXT_RUNS),
        description=f"The next fire times from now (at most `first`, 0–{MAX_NEXT_RUNS}), as the scheduler computes "
                    "them; empty while the schedule is paused.",
    )

    @staticmethod
    def resolve_next_runs(schedule: Schedule, info: Any, first: int | None = None) -> list[datetime]:
        limit = _page(first, DEFAULT_NEXT_RUNS, MAX_NEXT_RUNS)
        if not schedule.is_active:
            return []
        now = loaders(info).now()
        return _reading(lambda: timemaths.occurrences(schedule, after=now, until=now + NEXT_RUNS_WINDOW, limit=limit))


class StateType_(graphene.ObjectType):  # StateType is the model's enum
    class Meta:
        name = "State"

    type = graphene.String(required=True)
    name = graphene.String(required=True)
    message = graphene.String(required=True)
    timestamp = graphene.DateTime(required=True)


class TaskRunType(graphene.ObjectType):
    class Meta:
        name = "TaskRun"

    id = graphene.ID(required=True)
    task_key = graphene.String(required=True)
    map_index = graphene.Int(required=True, description="-1 for a task that is not mapped (or a mapped task's parent).")
    state_type = graphene.String(required=True)
    state_name = graphene.String(required=True)
    state_message = graphene.String(required=True)
    state_timestamp = graphene.DateTime(required=True)
    start_time = graphene.DateTime()
    end_time = graphene.DateTime()
    attempt = graphene.Int(required=True)
    tags = graphene.List(graphene.NonNull(graphene.String), required=True)
    state_history = graphene.List(
        graphene.NonNull(StateType_), required=True,
        description="Oldest first; each RUNNING state starts an attempt (retries pass through AwaitingRetry).",
    )

    @staticmethod
    def resolve_state_history(task_run: TaskRun, info: Any) -> Any:
        return loaders(info).task_run_states.load((task_run.workspace_id, task_run.pk))


class LogLineType(graphene.ObjectType):
    class Meta:
        name = "LogLine"

    sequence = graphene.Float(required=True, description="The per-run sequence number (a 64-bit integer).")
    level = graphene.Int(required=True, description="Python logging level: 10 debug … 50 critical.")
    timestamp = graphene.DateTime(required=True)
    logger = graphene.String(required=True)
    message = graphene.String(required=True)
    task_run_id = graphene.ID()


# --- Flow runs --------------------------------------------------------------------------------


class FlowRunType(graphene.ObjectType):
    class Meta:
        name = "FlowRun"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    state_type = graphene.String(required=True)
    state_name = graphene.String(required=True)
    state_message = graphene.String(required=True)
    state_timestamp = graphene.DateTime(required=True)
    state_version = graphene.Int(required=True)
    parameters = GenericScalar(required=True)
    labels = graphene.List(graphene.NonNull(graphene.String), required=True)
    scheduled_start = graphene.DateTime(required=True)
    start_time = graphene.DateTime()
    end_time = graphene.DateTime()
    created_at = graphene.DateTime(required=True)
    created_by_kind = graphene.String(required=True, description="user, schedule or api.")
    attempt = graphene.Int(required=True)
    cancellation_requested = graphene.Boolean(required=True)
    agent = graphene.Field(AgentRefType)
    flow = graphene.Field(FlowRefType, required=True)
    flow_version = graphene.Field(FlowVersionType, required=True)
    state_history = graphene.List(graphene.NonNull(StateType_), required=True, description="Oldest first.")
    task_runs = graphene.List(graphene.NonNull(TaskRunType), required=True)
    no_live_agent_reason = graphene.String(
        description="Why no agent takes this SCHEDULED run now (no healthy agent carries all its labels); null when "
                    "one does or the run is not waiting for one.")
    task_run = graphene.Field(TaskRunType, id=graphene.ID(required=True),
                              description="One of this run's task runs; null for any other id.")
    parent_flow_run = graphene.Field(
        lambda: FlowRunType,
        description="Flow of flows: the run that started this one; null when none did or you cannot see it.")
    parent_task_run_id = graphene.ID(description="The parent run's task run that started this one, when known.")
    child_flow_runs = graphene.List(
        graphene.NonNull(lambda: FlowRunType), required=True, first=graphene.Int(default_value=DEFAULT_PAGE),
        description=f"Flow of flows: the runs this one started that you can see, newest first (at most `first`, "
                    f"0–{MAX_PAGE}; flowRuns with the parentFlowRunId filter pages through all of them).")
    logs = graphene.List(
        graphene.NonNull(LogLineType),
        first=graphene.Int(default_value=200),
        after_sequence=graphene.Float(description="Only lines after this sequence number (to tail)."),
        level_gte=graphene.Int(description="Only lines at this level or above (10 debug … 50 critical)."),
        task_run_id=graphene.ID(description="Only the lines of this task run."),
        search=graphene.String(description="Only lines whose message contains this (case-insensitive)."),
        description="In sequence order. Null with permission_denied for roles without log:read.",
    )

    @staticmethod
    def resolve_state_history(run: FlowRun, info: Any) -> Any:
        return selectors.flow_run_states(run, limit=None)

    @staticmethod
    def resolve_task_runs(run: FlowRun, info: Any) -> Any:
        return loaders(info).task_runs.load((run.workspace_id, run.pk))

    @staticmethod
    def resolve_parent_flow_run(run: FlowRun, info: Any) -> Any:
        if run.parent_flow_run_id is None:
            return None
        return _run_loaders(info, run).parent_runs.load((run.workspace_id, run.parent_flow_run_id))

    @staticmethod
    def resolve_parent_task_run_id(run: FlowRun, info: Any) -> str | None:
        return None if run.parent_task_run_id is None else str(run.parent_task_run_id)

    @staticmethod
    def resolve_child_flow_runs(run: FlowRun, info: Any, first: int | None = None) -> Any:
        limit = _page(first)
        if limit == 0:
            return []
        return _run_loaders(info, run).child_runs.load((run.workspace_id, run.pk, limit))

    @staticmethod
    def resolve_no_live_agent_reason(run: FlowRun, info: Any) -> str | None:
        if run.state_type != StateType.SCHEDULED:
            return None
        return selectors.no_live_agent_reason(run, loaders(info).live_label_sets(run.workspace_id))

    @staticmethod
    def resolve_task_run(run: FlowRun, info: Any, id: str) -> Any:
        return _maybe(selectors.access_task_run, run, id)

    @staticmethod
    def resolve_logs(
        run: FlowRun, info: Any, first: int | None = None, after_sequence: float | None = None,
        level_gte: int | None = None, task_run_id: str | None = None, search: str | None = None,
    ) -> Any:
        limit = _page(first, 200, MAX_LOG_PAGE)
        after = None if after_sequence is None else int(after_sequence)
        if level_gte is not None and not 0 <= level_gte <= 100:
            raise _invalid("'levelGte' must be between 0 and 100.")
        if search is not None and (len(search) > MAX_LOG_SEARCH or "\x00" in search):
            raise _invalid(f"'search' is at most {MAX_LOG_SEARCH} characters, without NUL characters.")
        task_run = None
        if task_run_id is not None:
            # Another run's (or workspace's) task run is no filter at all: the answer is no lines.
            task_run = _maybe(selectors.access_task_run, run, task_run_id)
            if task_run is None:
                _reading(authorize, _principal_of(info, run), "log:read", run)
                return []
        # logs_list pages from 1 line; ``first: 0`` still checks log:read and answers no lines.
        lines = _reading(lambda: logs_list(
            actor=_principal_of(info, run), flow_run=run, after_sequence=after, level_gte=level_gte,
            task_run_id=task_run.pk if task_run is not None else None, search=search or None, limit=max(limit, 1),
        ))
        return lines[:limit]


def _run_loaders(info: Any, run: FlowRun) -> Any:
    """The request's loaders, with the viewer's Principal in ``run``'s workspace known to them (the
    parent and child loaders read only what it may see)."""
    found = loaders(info)
    if run.workspace_id not in found.principals:
        found.principals[run.workspace_id] = _principal_of(info, run)
    return found


def _principal_of(info: Any, obj: Any) -> Principal:
    """The viewer's Principal in ``obj``'s workspace: as the ``orchestration`` root resolved it, or
    (in a mutation's payload) built afresh by the request's context."""
    principal = loaders(info).principals.get(obj.workspace_id)
    if principal is not None:
        return principal
    try:
        return get_context(info).principal(obj.workspace)
    except NotFound as exc:
        raise graphql_error(exc) from None


class FlowRunConnection(graphene.relay.Connection):
    """Flow runs, newest first."""

    class Meta:
        node = FlowRunType

    total_count = graphene.Int(required=True, description="How many runs match the filter, on every page.")

    @staticmethod
    def resolve_total_count(connection: Any, info: Any) -> int:
        return connection.matching.count()


class FlowRunFilterInput(graphene.InputObjectType):
    """The run filter REST and bulk actions use too (:class:`orchestration.selectors.FlowRunFilter`)."""

    class Meta:
        name = "FlowRunFilter"

    flow_id = graphene.ID()
    state_types = graphene.List(graphene.NonNull(graphene.String), description="Any of these state types.")
    state_name = graphene.String()
    labels = graphene.List(graphene.NonNull(graphene.String), description="Runs carrying all of these labels.")
    scheduled_before = graphene.DateTime(description="Scheduled to start before this time.")
    scheduled_after = graphene.DateTime(description="Scheduled to start at or after this time.")
    created_by = graphene.String(description="user, schedule or api.")
    tags = graphene.List(graphene.NonNull(graphene.String),
                         description="Runs with a task run carrying each of these tags.")
    without_live_agent = graphene.Boolean(
        description="Only SCHEDULED runs no healthy agent can take (none carries all of their labels).")
    parent_flow_run_id = graphene.ID(description="Only the child runs this run started (flow of flows).")


def _encode_cursor(run: FlowRun) -> str:
    return base64.urlsafe_b64encode(f"{run.created_at.isoformat()}|{run.pk}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, pk = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), uuid.UUID(pk)
    except (ValueError, binascii.Error):
        raise GraphQLError("The cursor is not one this API gave out.", extensions={"code": "invalid_cursor"}) from None


def _run_filter(given: dict | None) -> FlowRunFilter:
    """The GraphQL filter argument, checked, as the shared run filter."""
    given = given or {}
    state_types = given.get("state_types")
    if state_types is not None:
        unknown = sorted(set(state_types) - set(StateType.values))
        if unknown or len(state_types) > MAX_FILTER_ITEMS:
            raise _invalid(f"Unknown state types: {', '.join(unknown)}; use {', '.join(StateType.values)}.")
    labels = given.get("labels")
    if labels and (len(labels) > MAX_FILTER_ITEMS or any("\x00" in label for label in labels)):
        raise _invalid(f"At most {MAX_FILTER_ITEMS} labels, without NUL characters.")
    created_by = given.get("created_by")
    if created_by is not None and created_by not in FlowRun.CreatedBy.values:
        raise _invalid(f"createdBy must be one of {', '.join(FlowRun.CreatedBy.values)}.")
    tags = given.get("tags")
    if tags and (len(tags) > MAX_FILTER_ITEMS or any("\x00" in tag or len(tag) > 200 for tag in tags)):
        raise _invalid(f"At most {MAX_FILTER_ITEMS} tags of up to 200 characters, without NUL characters.")
    return FlowRunFilter(
        flow_id=given.get("flow_id"),
        state_types=state_types,
        state_name=given.get("state_name"),
        labels=labels,
        scheduled_before=given.get("scheduled_before"),
        scheduled_after=given.get("scheduled_after"),
        created_by=created_by,
        tags=tags,
        without_live_agent=bool(given.get("without_live_agent")),
        parent_flow_run_id=given.get("parent_flow_run_id"),
    )


def flow_run_page(
    principal: Principal, filter: dict | None, first: int | None, after: str | None, offset: int | None = None
) -> FlowRunConnection:
    """A page of runs, newest first: after a cursor (to load more), or from an offset (numbered pages
    in the web app; ``totalCount`` says how many there are)."""
    limit = _page(first)
    if offset is not None and not 0 <= offset <= MAX_OFFSET:
        raise _invalid(f"'offset' must be between 0 and {MAX_OFFSET}; narrow the filter to reach older runs.")
    if offset and after:
        raise _invalid("Give 'after' or 'offset', not both.")
    run_filter = _run_filter(filter)
    matching = selectors.filter_runs(_reading(selectors.runs_visible_to, principal), run_filter,
                                     workspace=principal.workspace)
    runs = matching
    if after:
        created_at, pk = _decode_cursor(after)
        runs = runs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk))
    start = offset or 0
    page = list(runs[start: start + limit + 1])
    edges = [FlowRunConnection.Edge(node=run, cursor=_encode_cursor(run)) for run in page[:limit]]
    connection = FlowRunConnection(
        edges=edges,
        page_info=graphene.relay.PageInfo(
            has_next_page=len(page) > limit,
            has_previous_page=bool(after or start),
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
    connection.matching = matching  # counted only when totalCount is asked for
    return connection


# --- Flows and projects -----------------------------------------------------------------------


class FlowType(graphene.ObjectType):
    class Meta:
        name = "Flow"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    description = graphene.String(required=True)
    created_at = graphene.DateTime(required=True)
    concurrency_limit = graphene.Int()
    catchup = graphene.String(required=True)
    max_lateness_seconds = graphene.Int()
    project = graphene.Field(ProjectRefType, required=True)
    active_version = graphene.Field(FlowVersionType, description="The pinned version, else the newest unarchived.")
    pinned_version_id = graphene.ID(description="The version pinned as the active one; null when none is.")
    versions = graphene.List(graphene.NonNull(FlowVersionType), required=True, description="Newest first.")
    schedules = graphene.List(graphene.NonNull(ScheduleType), required=True)
    recent_runs = graphene.List(graphene.NonNull(FlowRunType), required=True, first=graphene.Int(default_value=10))

    @staticmethod
    def resolve_pinned_version_id(flow: Flow, info: Any) -> str | None:
        return None if flow.pinned_version_id is None else str(flow.pinned_version_id)

    @staticmethod
    def resolve_active_version(flow: Flow, info: Any) -> Any:
        return selectors.flow_version_for_new_run(flow)

    @staticmethod
    def resolve_versions(flow: Flow, info: Any) -> Any:
        return selectors.flow_versions(flow)

    @staticmethod
    def resolve_schedules(flow: Flow, info: Any) -> Any:
        return selectors.flow_schedules(flow)

    @staticmethod
    def resolve_recent_runs(flow: Flow, info: Any, first: int | None = None) -> Any:
        limit = _page(first, 10)
        runs = _reading(selectors.runs_visible_to, _principal_of(info, flow))
        return list(selectors.filter_runs(runs, FlowRunFilter(flow_id=flow.pk))[:limit])


class ProjectType(graphene.ObjectType):
    class Meta:
        name = "Project"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    description = graphene.String(required=True)
    is_restricted = graphene.Boolean(required=True)
    flows = graphene.List(graphene.NonNull(FlowRefType), required=True, description="Unarchived flows by name.")

    @staticmethod
    def resolve_flows(project: Any, info: Any) -> Any:
        return project.flows.all()  # prefetched by selectors.projects_with_flows


# --- Dashboard and root -----------------------------------------------------------------------


class DashboardType(graphene.ObjectType):
    class Meta:
        name = "Dashboard"

    now = graphene.DateTime(required=True, description="The server's clock, to align the chart's buckets.")
    counts_by_state = graphene.List(
        graphene.NonNull(StateCountType),
        required=True,
        hours=graphene.Int(default_value=DEFAULT_HOURS),
        description="Runs per state among those scheduled to start in the last `hours` hours or later.",
    )
    runs_by_state_over_time = graphene.List(
        graphene.NonNull(StateBucketType),
        required=True,
        hours=graphene.Int(default_value=DEFAULT_HOURS),
        description="Runs per hour of scheduled start and state, over the last `hours` hours; empty buckets left out.",
    )
    late_runs = graphene.List(graphene.NonNull(FlowRunType), required=True, first=graphene.Int(default_value=10))
    failing_runs = graphene.List(graphene.NonNull(FlowRunType), required=True, first=graphene.Int(default_value=10))
    upcoming_runs = graphene.List(graphene.NonNull(FlowRunType), required=True, first=graphene.Int(default_value=10))
    agents = graphene.List(graphene.NonNull(AgentType), required=True)

    @staticmethod
    def resolve_now(principal: Principal, info: Any) -> datetime:
        return loaders(info).now()

    @staticmethod
    def resolve_counts_by_state(principal: Principal, info: Any, hours: int | None = None) -> Any:
        return _reading(selectors.counts_by_state, principal, _hours(hours))

    @staticmethod
    def resolve_runs_by_state_over_time(principal: Principal, info: Any, hours: int | None = None) -> Any:
        return _reading(selectors.runs_by_state_over_time, principal, _hours(hours))

    @staticmethod
    def resolve_late_runs(principal: Principal, info: Any, first: int | None = None) -> Any:
        return list(_reading(selectors.late_runs, principal)[: _page(first, 10)])

    @staticmethod
    def resolve_failing_runs(principal: Principal, info: Any, first: int | None = None) -> Any:
        return list(_reading(selectors.failing_runs, principal)[: _page(first, 10)])

    @staticmethod
    def resolve_upcoming_runs(principal: Principal, info: Any, first: int | None = None) -> Any:
        return list(_reading(selectors.upcoming_runs, principal)[: _page(first, 10)])

    @staticmethod
    def resolve_agents(principal: Principal, info: Any) -> Any:
        return _reading(selectors.agents_of, principal)


class OrchestrationType(graphene.ObjectType):
    """One workspace's flows, runs and agents, as the viewer may see them."""

    class Meta:
        name = "Orchestration"

    dashboard = graphene.Field(DashboardType, required=True)
    projects = graphene.List(graphene.NonNull(ProjectType), description="Projects you can see, by name.")
    flow = graphene.Field(FlowType, id=graphene.ID(required=True), description="Null for any id you cannot see.")
    flow_runs = graphene.Field(
        FlowRunConnection,
        filter=FlowRunFilterInput(),
        first=graphene.Int(default_value=DEFAULT_PAGE),
        after=graphene.String(),
        offset=graphene.Int(description=f"Skip this many runs (0–{MAX_OFFSET}), for numbered pages; not with after."),
        description="Newest first.",
    )
    flow_run = graphene.Field(FlowRunType, id=graphene.ID(required=True), description="Null for any id you cannot see.")
    agents = graphene.List(graphene.NonNull(AgentType), description="By name, with their liveness.")
    bulk_action = graphene.Field(BulkActionType, id=graphene.ID(required=True),
                                 description="A bulk action's progress; null for any id you cannot see.")
    alerts = graphene.Field(lambda: _alerts_type(), required=True,
                            description="SLA policies, incidents and notification channels.")

    @staticmethod
    def resolve_alerts(principal: Principal, info: Any) -> Principal:
        return principal

    @staticmethod
    def resolve_bulk_action(principal: Principal, info: Any, id: str) -> Any:
        return _maybe(selectors.access_bulk_action, principal, id)

    @staticmethod
    def resolve_dashboard(principal: Principal, info: Any) -> Principal:
        return principal

    @staticmethod
    def resolve_projects(principal: Principal, info: Any) -> Any:
        return _reading(selectors.projects_with_flows, principal)

    @staticmethod
    def resolve_flow(principal: Principal, info: Any, id: str) -> Any:
        return _maybe(selectors.access_flow, principal, id)

    @staticmethod
    def resolve_flow_runs(
        principal: Principal, info: Any, filter: dict | None = None, first: int | None = None, after: str | None = None,
        offset: int | None = None,
    ) -> Any:
        return flow_run_page(principal, filter, first, after, offset)

    @staticmethod
    def resolve_flow_run(principal: Principal, info: Any, id: str) -> Any:
        return _maybe(selectors.access_flow_run, principal, id)

    @staticmethod
    def resolve_agents(principal: Principal, info: Any) -> Any:
        return _reading(selectors.agents_of, principal)


def _alerts_type() -> Any:
    from .alerts import AlertsType  # imported late: it builds on the types above

    return AlertsType
