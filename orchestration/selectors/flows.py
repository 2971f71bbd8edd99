"""Flows, their versions and schedules as a principal may see them, and which version a new run
uses."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from accounts.authz import NotFound, Principal, authorize
from core import rows
from orchestration.models import Flow, FlowRun, FlowVersion, Schedule

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
    # Every run creation reads its flow here: by hand, not through the ORM's compiler (core/rows.py).
    flow = rows.by_id(Flow, principal.workspace, parse_id(flow_id), related="project")
    if flow is None:
        raise NotFound()
    authorize(principal, action, flow.project)
    return flow


def _versions_for_new_runs(flow_ids: Collection[Any]) -> QuerySet[FlowVersion]:
    """THE rule for which version a new run of a flow uses: the pinned one, else the newest
    unarchived one (a flow with neither has none). One query, whatever the number of flows: each
    flow's choice is a subquery. The versions are reached through flows the caller already holds,
    so no workspace filter is added (the scheduler asks across workspaces)."""
    newest = FlowVersion.objects.unscoped().filter(flow=OuterRef("pk"), is_archived=False).order_by("-version")
    chosen = (
        Flow.objects.unscoped()
        .filter(pk__in=list(flow_ids))
        .annotate(chosen=Coalesce("pinned_version", Subquery(newest.values("pk")[:1])))
        .values("chosen")
    )
    return FlowVersion.objects.unscoped().filter(pk__in=chosen)


_VERSION = rows.Columns(FlowVersion, "v")
# The id of the version a new run of a flow uses (the flow's id twice): the pinned one, else the
# newest unarchived one.
_NEW_RUN_VERSION_ID = (
    'COALESCE((SELECT f."pinned_version_id" FROM "orchestration_flow" f WHERE f."id" = %s), '
    '(SELECT n."id" FROM "orchestration_flowversion" n WHERE n."flow_id" = %s AND NOT n."is_archived" '
    'ORDER BY n."version" DESC LIMIT 1))'
)


def flow_version_for_new_run(flow: Flow) -> FlowVersion | None:
    """The version a new run of ``flow`` uses (the rule of :func:`_versions_for_new_runs`, for one
    flow); None when there is none (callers that need one answer Conflict ``no_active_version``).
    Every run creation asks, so the statement is written by hand rather than compiled by the ORM
    (core/rows.py); tests/orchestration/selectors/test_flow_versions.py holds both to the same
    answers."""
    flow_id = Flow._meta.pk.get_db_prep_value(flow.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT {_VERSION.sql} FROM "orchestration_flowversion" v WHERE v."id" = {_NEW_RUN_VERSION_ID}',  # noqa: S608
            [flow_id, flow_id],
        )
        row = cursor.fetchone()
    return None if row is None else _VERSION.load(row)


_KEYED_RUN = rows.Columns(FlowRun, "r")
_KEYED_RUN_ID = _KEYED_RUN.attnames.index("id")
_VERSION_ID = _VERSION.attnames.index("id")


def keyed_run_and_version_for_new_run(flow: Flow, key: str) -> tuple[FlowRun | None, FlowVersion | None]:
    """For a run creation with an idempotency key, in one statement: the run of the flow's
    workspace created earlier with ``key`` (a replay answers with it), and the version a new run
    of ``flow`` would use (:func:`flow_version_for_new_run`); each None when there is none."""
    flow_id = Flow._meta.pk.get_db_prep_value(flow.pk, connection)
    workspace_id = FlowRun._meta.get_field("workspace").get_db_prep_value(flow.workspace_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_KEYED_RUN.sql}, {_VERSION.sql} FROM (SELECT 1 AS one) x "  # noqa: S608 (names from the models)
            'LEFT JOIN "orchestration_flowrun" r ON r."workspace_id" = %s AND r."idempotency_key" = %s '
            f'LEFT JOIN "orchestration_flowversion" v ON v."id" = {_NEW_RUN_VERSION_ID}',
            [workspace_id, key, flow_id, flow_id],
        )
        row = cursor.fetchone()
    assert row is not None  # one row, whatever the joins find
    run = None if row[_KEYED_RUN_ID] is None else _KEYED_RUN.load(row)
    version = None if row[_KEYED_RUN.width + _VERSION_ID] is None else _VERSION.load(row, _KEYED_RUN.width)
    return run, version


def flow_versions_for_new_runs(flows: Iterable[Flow], *, only: Sequence[str] = ()) -> dict[Any, FlowVersion]:
    """flow id → the version a new run of that flow uses, for many flows in one query (flows with
    no usable version are left out). ``only`` limits the columns loaded (the flow id is always)."""
    versions = _versions_for_new_runs({flow.pk for flow in flows})
    if only:
        versions = versions.only("flow", *only)
    return {version.flow_id: version for version in versions}


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
