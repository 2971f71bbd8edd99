"""REST adapters for orchestration: validate with a strict input serializer, call one selector or
service, render. No view queries the database itself.

The guard (WorkspaceAPIView) has already resolved the workspace, the principal, the RLS scope and
the method's action on the workspace. Every object named in the URL is looked up through an
``access_*`` selector, which answers 404 alike for a bad id, a missing object, another workspace's
and one in a restricted project not shared with the caller; services authorize again on the object.

Agent POSTs (set-state, task-run batches, logs, heartbeats, claims) honour an ``Idempotency-Key``
header: a replay returns the stored response, the same key with another body is 422 (see
``services/idempotency.py``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.guard import WorkspaceAPIView
from accounts.authz import NotFound
from core.errors import InvalidInput
from core.openapi import QUOTA_EXCEEDED, error
from core.pagination import CreatedCursorPagination, results_envelope
from core.serializers import represent, validated
from orchestration.engine import ProposedState, db_now, flow_run_set_state
from orchestration.models import FlowRun, FlowVersion
from orchestration.selectors import (
    FlowRunFilter,
    access_agent,
    access_bulk_action,
    access_flow,
    access_flow_run,
    access_flow_version,
    access_project,
    access_schedule,
    agents_of,
    claimed_runs,
    filter_runs,
    flow_run_detail,
    flow_run_states,
    flow_schedules,
    flow_versions,
    flows_visible_to,
    projects_visible_to,
    runs_visible_to,
    task_runs_of,
)
from orchestration.selectors.runs import agent_flow_run_id
from orchestration.services import (
    agents,
    bulk_actions,
    claims,
    concurrency,
    heartbeats,
    idempotency,
    logs,
    projects,
    runs,
    schedules,
    task_runs,
)
from orchestration.services import flows as flow_services

from . import serializers as s

MAX_IDEMPOTENCY_KEY = 200
# The one error only an idempotent POST answers (services/idempotency.py).
IDEMPOTENCY_KEY_REUSED = error("The Idempotency-Key was already used with a different body (`idempotency_key_reused`).")


# --- helpers ------------------------------------------------------------------------------------


def _valid(serializer_class: type, request: Request) -> dict[str, Any]:
    return validated(serializer_class, request.data)


def _query(serializer_class: type, request: Request) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, field in serializer_class().fields.items():
        if name not in request.query_params:
            continue
        if isinstance(field, drf_serializers.ListField):
            values: list[str] = []
            for raw in request.query_params.getlist(name):
                values.extend(v for v in raw.split(",") if v)
            data[name] = values
        else:
            data[name] = request.query_params.get(name)
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _paginated(
    view: WorkspaceAPIView, request: Request, queryset: QuerySet, out: type, **context: Any
) -> Response:
    # The view's own pagination_class: the one the OpenAPI schema documents its envelope from.
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    # Without context, the shared serializer and its fast renderer (core/serializers.represent).
    data = represent(out, page, many=True) if not context else out(page, many=True, context=context).data
    return paginator.get_paginated_response(data)


def _idempotent(
    view: WorkspaceAPIView, request: Request, scope: str, compute: Callable[[], tuple[int, dict]]
) -> Response:
    # request.headers would build a dict of every header for this one (request.headers reads META too).
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if not key:
        code, body = compute()
        return Response(body, status=code)
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(f"An Idempotency-Key is at most {MAX_IDEMPOTENCY_KEY} characters.",
                           details={"Idempotency-Key": ["Too long."]})
    body = request.data if isinstance(request.data, dict) else {"body": request.data}
    # No savepoint: an error leaving idempotent_call rolls the whole request back (ATOMIC_REQUESTS),
    # the record and the compute's effects with it, and nothing here carries on after one.
    code, data = idempotency.idempotent_call(
        workspace=view.workspace, scope=scope, key=key, body=body, compute=compute, savepoint=False
    )
    return Response(data, status=code)


def _replayable(view: WorkspaceAPIView, request: Request, scope: str, call: Callable[[], Any]) -> Response:
    """An agent POST whose reply is always 200 with the service's answer as JSON."""
    return _idempotent(view, request, scope, lambda: (status.HTTP_200_OK, _jsonable(call())))


def _body_ref(kind: str, loader: Callable[[], Any]) -> Any:
    """An object named in the request body: a missing one is a 400 about that field."""
    try:
        return loader()
    except NotFound:
        raise InvalidInput(f"{kind}: no such {kind} in this workspace.", code="invalid",
                           details={kind: ["Not found."]}) from None


def _jsonable(value: Any) -> Any:
    """A service's reply as a JSON object (stored as-is by the idempotency record)."""
    if isinstance(value, (list, tuple)):
        return {"results": _plain(list(value))}
    return _plain(value) if isinstance(value, dict) else {"result": _plain(value)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# --- projects -----------------------------------------------------------------------------------


class ProjectListView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "POST": "project:write"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.ProjectOut(many=True), summary="Projects you can see")
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, projects_visible_to(self.principal), s.ProjectOut)

    @extend_schema(request=s.ProjectCreateIn, responses={201: s.ProjectOut}, summary="Create a project")
    def post(self, request: Request, workspace_slug: str) -> Response:
        project = projects.project_create(actor=self.principal, **_valid(s.ProjectCreateIn, request))
        return Response(s.ProjectOut(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "PATCH": "project:write", "DELETE": "project:write"}

    @extend_schema(responses=s.ProjectOut)
    def get(self, request: Request, workspace_slug: str, project_id: str) -> Response:
        return Response(s.ProjectOut(access_project(self.principal, project_id)).data)

    @extend_schema(request=s.ProjectUpdateIn, responses=s.ProjectOut)
    def patch(self, request: Request, workspace_slug: str, project_id: str) -> Response:
        data = _valid(s.ProjectUpdateIn, request)
        project = access_project(self.principal, project_id)
        project = projects.project_update(actor=self.principal, project=project, **data)
        return Response(s.ProjectOut(project).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, project_id: str) -> Response:
        projects.project_delete(actor=self.principal, project=access_project(self.principal, project_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- flows and versions -------------------------------------------------------------------------


class FlowListView(WorkspaceAPIView):
    scope_map = {"GET": "project:read"}
    pagination_class = CreatedCursorPagination

    @extend_schema(
        parameters=[OpenApiParameter("project", OpenApiTypes.UUID), OpenApiParameter("name", OpenApiTypes.STR)],
        responses=s.FlowOut(many=True), summary="Flows, optionally by project or name",
    )
    def get(self, request: Request, workspace_slug: str) -> Response:
        filters = _query(s.FlowFilterIn, request)
        flows = flows_visible_to(self.principal, project_id=filters.get("project"), name=filters.get("name"))
        return _paginated(self, request, flows, s.FlowOut)


class FlowRegisterView(WorkspaceAPIView):
    scope_map = {"POST": "flow:register"}

    @extend_schema(request=s.FlowRegisterIn, responses={201: s.FlowRegisterOut, 200: s.FlowRegisterOut},
                   summary="Register a flow's metadata (idempotent by content hash)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRegisterIn, request)
        version, created = flow_services.flow_register(
            actor=self.principal, project_name=data["project"], name=data["name"], metadata=data["metadata"]
        )
        flow = access_flow(self.principal, version.flow_id)
        body = {"created": created, "flow": s.FlowOut(flow).data, "version": s.FlowVersionOut(version).data}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class FlowDetailView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "PATCH": "project:write", "DELETE": "project:write"}

    @extend_schema(responses=s.FlowOut)
    def get(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        return Response(s.FlowOut(access_flow(self.principal, flow_id)).data)

    @extend_schema(request=s.FlowUpdateIn, responses=s.FlowOut)
    def patch(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        data = _valid(s.FlowUpdateIn, request)
        flow = access_flow(self.principal, flow_id)
        flow = flow_services.flow_update(actor=self.principal, flow=flow, fields=set(data), **data)
        return Response(s.FlowOut(flow).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        flow_services.flow_delete(actor=self.principal, flow=access_flow(self.principal, flow_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlowVersionListView(WorkspaceAPIView):
    scope_map = {"GET": "project:read"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.FlowVersionOut(many=True), summary="A flow's versions, newest first")
    def get(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        return _paginated(self, request, flow_versions(access_flow(self.principal, flow_id)), s.FlowVersionOut)


class _VersionView(WorkspaceAPIView):
    scope_map = {"POST": "flow:register"}

    def flow_and_version(self, flow_id: str, version_id: str) -> tuple[Any, FlowVersion]:
        flow = access_flow(self.principal, flow_id)
        return flow, access_flow_version(self.principal, flow, version_id)


class FlowVersionArchiveView(_VersionView):
    @extend_schema(request=s.VersionArchiveIn, responses=s.FlowVersionOut, summary="Archive (or restore) a version")
    def post(self, request: Request, workspace_slug: str, flow_id: str, version_id: str) -> Response:
        data = _valid(s.VersionArchiveIn, request)
        _flow, version = self.flow_and_version(flow_id, version_id)
        version = flow_services.flow_version_archive(actor=self.principal, version=version, archived=data["archived"])
        return Response(s.FlowVersionOut(version).data)


class FlowVersionPinView(_VersionView):
    @extend_schema(request=s.VersionPinIn, responses=s.FlowOut, summary="Pin (or unpin) a version as the active one")
    def post(self, request: Request, workspace_slug: str, flow_id: str, version_id: str) -> Response:
        data = _valid(s.VersionPinIn, request)
        flow, version = self.flow_and_version(flow_id, version_id)
        if data["pinned"]:
            flow = flow_services.flow_pin_version(actor=self.principal, flow=flow, version=version)
        else:
            flow = flow_services.flow_unpin_version(actor=self.principal, flow=flow)
        return Response(s.FlowOut(flow).data)


# --- schedules ----------------------------------------------------------------------------------


class ScheduleListView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "POST": "project:write"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.ScheduleOut(many=True))
    def get(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        return _paginated(self, request, flow_schedules(access_flow(self.principal, flow_id)), s.ScheduleOut)

    @extend_schema(request=s.ScheduleIn, responses={201: s.ScheduleOut}, summary="Add a schedule")
    def post(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        data = _valid(s.ScheduleIn, request)
        schedule = schedules.schedule_create(actor=self.principal, flow=access_flow(self.principal, flow_id), **data)
        return Response(s.ScheduleOut(schedule).data, status=status.HTTP_201_CREATED)


class _ScheduleView(WorkspaceAPIView):
    def schedule(self, flow_id: str, schedule_id: str) -> Any:
        return access_schedule(self.principal, access_flow(self.principal, flow_id), schedule_id)


class ScheduleDetailView(_ScheduleView):
    scope_map = {"GET": "project:read", "PATCH": "project:write", "DELETE": "project:write"}

    @extend_schema(responses=s.ScheduleOut)
    def get(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        return Response(s.ScheduleOut(self.schedule(flow_id, schedule_id)).data)

    @extend_schema(request=s.ScheduleUpdateIn, responses=s.ScheduleOut)
    def patch(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        data = _valid(s.ScheduleUpdateIn, request)
        schedule = schedules.schedule_update(actor=self.principal, schedule=self.schedule(flow_id, schedule_id),
                                             **data)
        return Response(s.ScheduleOut(schedule).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        schedules.schedule_delete(actor=self.principal, schedule=self.schedule(flow_id, schedule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SchedulePauseView(_ScheduleView):
    scope_map = {"POST": "project:write"}

    @extend_schema(request=s.SchedulePauseIn, responses=s.ScheduleOut, summary="Pause or resume a schedule")
    def post(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        data = _valid(s.SchedulePauseIn, request)
        schedule = schedules.schedule_set_active(actor=self.principal, schedule=self.schedule(flow_id, schedule_id),
                                                 is_active=data["active"])
        return Response(s.ScheduleOut(schedule).data)


# --- flow runs ----------------------------------------------------------------------------------


def _run_filter(query: dict[str, Any]) -> FlowRunFilter:
    """The validated query of the run list as the one run filter."""
    return FlowRunFilter(
        flow_id=query.get("flow"), state_types=query.get("state_type"), state_name=query.get("state_name"),
        labels=query.get("labels"), scheduled_before=query.get("scheduled_before"),
        scheduled_after=query.get("scheduled_after"), created_by=query.get("created_by"), tags=query.get("tags"),
        without_live_agent=bool(query.get("without_live_agent")),
        parent_flow_run_id=query.get("parent_flow_run"),
    )


def _created_by_kind(view: WorkspaceAPIView) -> str:
    return FlowRun.CreatedBy.USER if view.principal.api_key is None else FlowRun.CreatedBy.API


class FlowRunListView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "POST": "flow_run:create"}
    pagination_class = CreatedCursorPagination

    @extend_schema(
        parameters=[
            OpenApiParameter("flow", OpenApiTypes.UUID),
            OpenApiParameter("state_type", OpenApiTypes.STR, description="One or more (repeat or comma-separate)"),
            OpenApiParameter("state_name", OpenApiTypes.STR),
            OpenApiParameter("labels", OpenApiTypes.STR, description="Runs carrying all of these labels"),
            OpenApiParameter("scheduled_before", OpenApiTypes.DATETIME),
            OpenApiParameter("scheduled_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_by", OpenApiTypes.STR, enum=FlowRun.CreatedBy.values),
            OpenApiParameter("tags", OpenApiTypes.STR, description="Runs with a task run carrying each of these tags"),
            OpenApiParameter("without_live_agent", OpenApiTypes.BOOL,
                             description="Only SCHEDULED runs no healthy agent can take (none has all their labels)"),
            OpenApiParameter("parent_flow_run", OpenApiTypes.UUID,
                             description="Only the child runs this run started (flow of flows)"),
        ],
        responses=s.FlowRunOut(many=True), summary="Flow runs, newest first, with filters and a cursor",
    )
    def get(self, request: Request, workspace_slug: str) -> Response:
        run_filter = _run_filter(_query(s.FlowRunFilterIn, request))
        runs = filter_runs(runs_visible_to(self.principal), run_filter, workspace=self.principal.workspace)
        # FlowRunOut reads only the run's own columns: the joined flow, agent and version (whose
        # tasks are JSON to decode) would be three more instances a run for nothing.
        return _paginated(self, request, runs.select_related(None), s.FlowRunOut)

    @extend_schema(request=s.FlowRunCreateIn, responses={201: s.FlowRunOut, 200: s.FlowRunOut, 402: QUOTA_EXCEEDED},
                   summary="Quick run: create a flow run (a replayed idempotency_key returns the same run)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRunCreateIn, request)
        flow = _body_ref("flow", lambda: access_flow(self.principal, data.pop("flow")))
        version_id = data.pop("flow_version", None)
        if version_id is not None:
            data["flow_version"] = _body_ref("flow_version",
                                             lambda: access_flow_version(self.principal, flow, version_id))
        # No savepoint: a refusal rolls the whole request back (ATOMIC_REQUESTS); nothing carries on.
        run, created = runs.flow_run_create(
            actor=self.principal, flow=flow, created_by_kind=_created_by_kind(self), savepoint=False, **data
        )
        return Response(represent(s.FlowRunOut, run), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class FlowRunBulkCreateView(WorkspaceAPIView):
    scope_map = {"POST": "flow_run:create"}

    @extend_schema(request=s.FlowRunBulkCreateIn, responses={201: OpenApiTypes.OBJECT, 402: QUOTA_EXCEEDED},
                   summary="Create up to 5,000 runs of one flow")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRunBulkCreateIn, request)
        flow = _body_ref("flow", lambda: access_flow(self.principal, data["flow"]))
        created = runs.flow_run_bulk_create(actor=self.principal, flow=flow, runs=[dict(r) for r in data["runs"]])
        return Response({"count": len(created), "ids": [str(r.pk) for r in created]},
                        status=status.HTTP_201_CREATED)


class FlowRunBulkActionView(WorkspaceAPIView):
    scope_map = {"POST": "flow_run:update"}

    @extend_schema(request=s.FlowRunBulkActionIn, responses={200: s.BulkActionOut, 202: s.BulkActionOut},
                   summary="Cancel, mark or clear late every run matching a filter (in batches; a large "
                           "selection runs in the background: 202, follow bulk-actions/{id}/)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRunBulkActionIn, request)
        if data["action"] == "mark" and not data.get("state_type"):
            raise InvalidInput("'mark' needs a state_type.", details={"state_type": ["Required for mark."]})
        given = {k: v for k, v in dict(data["filters"]).items() if v not in (None, [])}
        # The filters as the bulk action stores them (see services.runs.bulk_run_filter).
        filters: dict[str, Any] = {}
        if "flow" in given:
            filters["flow_id"] = _body_ref("flow", lambda: access_flow(self.principal, given["flow"])).pk
        if "state_type" in given:
            filters["state_types"] = list(given["state_type"])
        for name in ("labels", "scheduled_before", "scheduled_after"):
            if name in given:
                filters[name] = given[name]
        bulk = bulk_actions.bulk_action_create(
            actor=self.principal, action=data["action"], filters=filters, state_type=data.get("state_type")
        )
        finished = bulk.status in ("finished", "failed")
        return Response(s.BulkActionOut(bulk).data, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED)


class BulkActionDetailView(WorkspaceAPIView):
    scope_map = {"GET": "project:read"}

    @extend_schema(responses=s.BulkActionOut, summary="A bulk action's status and counts")
    def get(self, request: Request, workspace_slug: str, bulk_action_id: str) -> Response:
        bulk = access_bulk_action(self.principal, bulk_action_id)
        return Response(s.BulkActionOut(bulk).data)


class FlowRunDetailView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "DELETE": "flow_run:update"}

    @extend_schema(responses=s.FlowRunDetailOut, summary="A flow run with its task runs and state history")
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        return Response(s.FlowRunDetailOut(flow_run_detail(self.principal, flow_run_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        run = access_flow_run(self.principal, flow_run_id, action="flow_run:update")
        runs.flow_run_delete(actor=self.principal, flow_run=run)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlowRunStatesView(WorkspaceAPIView):
    """The run's state history in the order it happened, paged by state id: a follower (the CLI's
    ``run --watch``) sees every state, however briefly the run held it."""

    scope_map = {"GET": "project:read"}

    @extend_schema(
        parameters=[OpenApiParameter("after", OpenApiTypes.INT), OpenApiParameter("limit", OpenApiTypes.INT)],
        responses=results_envelope("FlowRunStatePage", s.StateOut, next_after=drf_serializers.IntegerField(
            allow_null=True, help_text="The last state's id: send it as `after` for the states that follow.")),
        summary="A run's state history; page with after",
    )
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        query = _query(s.StateFilterIn, request)
        run = access_flow_run(self.principal, flow_run_id)
        states = flow_run_states(run, after=query.get("after"), limit=query["limit"])
        return Response({
            "results": s.StateOut(states, many=True).data,
            "next_after": states[-1].pk if states else query.get("after"),
        })


def _result_body(result: Any) -> dict[str, Any]:
    return {
        "status": str(getattr(result.status, "value", result.status)),
        "state": {"type": result.state_type, "name": result.state_name, "version": result.state_version},
        "reason": result.reason,
        "details": _plain(result.details or {}),
    }


def _set_state_body(result: Any) -> tuple[int, dict]:
    body = _result_body(result)
    status_value = body["status"]
    if status_value in ("REJECT", "ABORT"):
        body["error"] = {
            "code": "state_rejected" if status_value == "REJECT" else "state_aborted",
            "message": result.reason or "The proposed state was not accepted.",
            "details": {"state": body["state"], **body["details"]},
        }
        return status.HTTP_409_CONFLICT, body
    if status_value == "WAIT":
        details = result.details or {}
        body["retry_after_seconds"] = int(details.get("retry_after_seconds") or details.get("delay_seconds") or 5)
    return status.HTTP_200_OK, body


class FlowRunSetStateView(WorkspaceAPIView):
    scope_map = {"POST": "flow_run:report_state"}

    @extend_schema(request=s.SetStateIn,
                   responses={200: s.SetStateOut, 409: s.SetStateConflictOut, 422: IDEMPOTENCY_KEY_REUSED},
                   summary="Propose a state (agent/SDK). REJECT/ABORT → 409 with the current state; WAIT → 200")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.SetStateIn, request)
        # The engine reads the run once, under its lock: a missing run or another workspace's is
        # its 404 (the request, idempotency record included, then rolls back).
        run_id = agent_flow_run_id(self.principal, flow_run_id, "flow_run:report_state")

        def compute() -> tuple[int, dict]:
            result = flow_run_set_state(
                actor=self.principal, flow_run_id=run_id, workspace_id=self.workspace.pk,
                state=ProposedState(**dict(data["state"])), expected_version=data.get("expected_version"),
                attempt=data.get("attempt"),
            )
            return _set_state_body(result)

        return _idempotent(self, request, f"flow_run:{run_id}:set_state", compute)


class _RunAction(WorkspaceAPIView):
    """A manual action on one run; the reply is the run as the action left it."""

    scope_map = {"POST": "flow_run:update"}
    run_service: Callable[..., Any]

    def act(self, flow_run_id: str, **kwargs: Any) -> Response:
        run = access_flow_run(self.principal, flow_run_id, action="flow_run:update")
        self.run_service(actor=self.principal, flow_run=run, **kwargs)
        return Response(represent(s.FlowRunOut, access_flow_run(self.principal, run.pk)))


class FlowRunCancelView(_RunAction):
    run_service = staticmethod(runs.flow_run_cancel)

    @extend_schema(request=None, responses=s.FlowRunOut,
                   summary="Cancel: CANCELLING while an agent holds the run (it confirms), else CANCELLED at once")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        _valid(s.EmptyIn, request)
        return self.act(flow_run_id)


class FlowRunRestartView(_RunAction):
    run_service = staticmethod(runs.flow_run_restart)

    @extend_schema(request=None, responses=s.FlowRunOut, summary="Restart from failed (failed and downstream tasks)")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        _valid(s.EmptyIn, request)
        return self.act(flow_run_id)


class FlowRunMarkView(_RunAction):
    run_service = staticmethod(runs.flow_run_mark)

    @extend_schema(request=s.MarkIn, responses=s.FlowRunOut, summary="Mark a run as a state")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.MarkIn, request)
        return self.act(flow_run_id, state_type=data["state_type"], message=data["message"])


class FlowRunTaskRunsView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "POST": "flow_run:report_state"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.TaskRunOut(many=True), summary="A run's task runs")
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        return _paginated(self, request, task_runs_of(access_flow_run(self.principal, flow_run_id)), s.TaskRunOut)

    @extend_schema(request=s.TaskRunBatchIn, responses={200: OpenApiTypes.OBJECT, 422: IDEMPOTENCY_KEY_REUSED},
                   summary="Report a batch of task-run states (agent); idempotent with Idempotency-Key")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.TaskRunBatchIn, request)
        # The engine reads the run once, under its lock: a missing run or another workspace's is
        # its 404 (the request, idempotency record included, then rolls back).
        run_id = agent_flow_run_id(self.principal, flow_run_id, "flow_run:report_state")
        reports = [
            {"task_key": r["task_key"], "map_index": r["map_index"], "state_type": r["state"]["type"],
             "state_name": r["state"]["name"], "message": r["state"]["message"],
             "result_ref": r["state"]["result_ref"], "expected_version": r.get("expected_version")}
            for r in data["reports"]
        ]

        def compute() -> tuple[int, dict]:
            results = task_runs.task_run_report_batch(
                actor=self.principal, flow_run_id=run_id, attempt=data["attempt"], reports=reports
            )
            return status.HTTP_200_OK, {"results": [_result_body(r) for r in results]}

        return _idempotent(self, request, f"flow_run:{run_id}:task_runs", compute)


class FlowRunLogsView(WorkspaceAPIView):
    scope_map = {"GET": "log:read", "POST": "log:write"}

    @extend_schema(
        parameters=[OpenApiParameter("level_gte", OpenApiTypes.INT), OpenApiParameter("task_run_id", OpenApiTypes.UUID),
                    OpenApiParameter("after_sequence", OpenApiTypes.INT), OpenApiParameter("search", OpenApiTypes.STR),
                    OpenApiParameter("limit", OpenApiTypes.INT)],
        responses=results_envelope("FlowRunLogPage", s.LogEntryOut, next_after_sequence=drf_serializers.IntegerField(
            allow_null=True, help_text="The last line's sequence: send it as `after_sequence` for the next lines.")),
        summary="A run's logs; page with after_sequence",
    )
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        query = _query(s.LogFilterIn, request)
        run = access_flow_run(self.principal, flow_run_id)
        lines = list(logs.logs_list(
            actor=self.principal, flow_run=run, level_gte=query.get("level_gte"),
            task_run_id=query.get("task_run_id"), after_sequence=query.get("after_sequence"),
            search=query.get("search"), limit=query["limit"],
        ))
        return Response({
            "results": s.LogEntryOut(lines, many=True).data,
            "next_after_sequence": lines[-1].sequence if lines else query.get("after_sequence"),
        })

    @extend_schema(request=s.LogBatchIn, responses=s.CountOut,
                   summary="Send a batch of log lines (agent); unique per (run, sequence)")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.LogBatchIn, request)
        run = access_flow_run(self.principal, flow_run_id, action="log:write")
        lines = [dict(line) for line in data["lines"]]
        return _replayable(self, request, f"flow_run:{run.pk}:logs", lambda: {
            "count": logs.logs_ingest(actor=self.principal, flow_run=run, lines=lines),
        })


LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def _log_text(line: Any, tasks: dict[Any, str]) -> str:
    task = f" [{tasks[line.task_run_id]}]" if line.task_run_id in tasks else ""
    logger = f" {line.logger}:" if line.logger else ""
    level = LEVEL_NAMES.get(line.level, str(line.level))
    return f"{line.timestamp.isoformat()} {level:<8}{task}{logger} {line.message}\n"


def _log_json(line: Any, tasks: dict[Any, str]) -> str:
    return json.dumps({
        "sequence": line.sequence, "timestamp": line.timestamp.isoformat(), "level": line.level,
        "level_name": LEVEL_NAMES.get(line.level, str(line.level)), "logger": line.logger,
        "task_run_id": str(line.task_run_id) if line.task_run_id else None,
        "task": tasks.get(line.task_run_id), "message": line.message,
    }) + "\n"


class FlowRunLogsDownloadView(WorkspaceAPIView):
    """A run's logs (all of them, or those matching the filters) as one file: plain text or JSON
    lines. Streamed page by page, so its size is bounded by the run's logs, not by memory."""

    scope_map = {"GET": "log:read"}

    @extend_schema(
        parameters=[OpenApiParameter("output", OpenApiTypes.STR, enum=["text", "jsonl"]),
                    OpenApiParameter("level_gte", OpenApiTypes.INT), OpenApiParameter("task_run_id", OpenApiTypes.UUID),
                    OpenApiParameter("search", OpenApiTypes.STR)],
        responses={(200, "text/plain"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
        summary="Download a run's logs as text or JSON lines",
    )
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> StreamingHttpResponse:
        query = _query(s.LogDownloadIn, request)
        run = access_flow_run(self.principal, flow_run_id)
        lines = logs.logs_export(actor=self.principal, flow_run=run, level_gte=query.get("level_gte"),
                                 task_run_id=query.get("task_run_id"), search=query.get("search"))
        tasks = {t.pk: t.task_key if t.map_index < 0 else f"{t.task_key}[{t.map_index}]" for t in task_runs_of(run)}
        render, content_type, suffix = (
            (_log_json, "application/x-ndjson", "jsonl") if query["output"] == "jsonl"
            else (_log_text, "text/plain; charset=utf-8", "log")
        )
        response = StreamingHttpResponse((render(line, tasks) for line in lines), content_type=content_type)
        filename = re.sub(r"[^A-Za-z0-9._-]+", "-", run.name).strip("-") or "run"
        response["Content-Disposition"] = f'attachment; filename="{filename}-{run.pk}.{suffix}"'
        return response


class FlowRunHeartbeatView(WorkspaceAPIView):
    scope_map = {"POST": "flow_run:report_state"}

    @extend_schema(request=s.FlowRunHeartbeatIn, responses=OpenApiTypes.OBJECT,
                   summary="Flow-run heartbeat: extends the lease; the reply says if cancellation was requested")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.FlowRunHeartbeatIn, request)
        # The lease's UPDATE finds the run: a missing run or another workspace's is its 404 (the
        # request, idempotency record included, then rolls back).
        run_id = agent_flow_run_id(self.principal, flow_run_id, "flow_run:report_state")
        return _replayable(self, request, f"flow_run:{run_id}:heartbeat", lambda: heartbeats.flow_run_heartbeat(
            actor=self.principal, flow_run_id=run_id, attempt=data["attempt"], lease_seconds=data["lease_seconds"],
        ))


# --- agents -------------------------------------------------------------------------------------


class AgentListView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "POST": "agent:register"}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=s.AgentOut(many=True), summary="Agents with their health")
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, agents_of(self.principal), s.AgentOut, now=db_now())

    @extend_schema(request=s.AgentRegisterIn, responses={201: s.AgentOut},
                   summary="Register (or re-register) an agent; service-account keys only")
    def post(self, request: Request, workspace_slug: str) -> Response:
        agent = agents.agent_register(actor=self.principal, **_valid(s.AgentRegisterIn, request))
        return Response(s.AgentOut(agent, context={"now": db_now()}).data, status=status.HTTP_201_CREATED)


class AgentHeartbeatView(WorkspaceAPIView):
    scope_map = {"POST": "agent:heartbeat"}

    @extend_schema(request=s.AgentHeartbeatIn, responses=OpenApiTypes.OBJECT,
                   summary="Agent heartbeat (polled=true once per claim-loop cycle)")
    def post(self, request: Request, workspace_slug: str, agent_id: str) -> Response:
        data = _valid(s.AgentHeartbeatIn, request)
        agent = access_agent(self.principal, agent_id, action="agent:heartbeat")
        return _replayable(self, request, f"agent:{agent.pk}:heartbeat", lambda: agents.agent_heartbeat(
            actor=self.principal, agent=agent, polled=data["polled"], flow_runs=data.get("flow_runs"),
        ))


class AgentStopView(WorkspaceAPIView):
    scope_map = {"POST": "agent:heartbeat"}

    @extend_schema(request=s.EmptyIn, responses=OpenApiTypes.OBJECT,
                   summary="The agent is shutting down cleanly: it shows stopped at once (its own key only)")
    def post(self, request: Request, workspace_slug: str, agent_id: str) -> Response:
        _valid(s.EmptyIn, request)
        agent = access_agent(self.principal, agent_id, action="agent:heartbeat")
        return Response(agents.agent_stop(actor=self.principal, agent=agent))


class AgentClaimView(WorkspaceAPIView):
    scope_map = {"POST": "flow_run:claim"}

    @extend_schema(request=s.ClaimIn,
                   responses={200: results_envelope("ClaimedRuns", s.ClaimedRunOut), 422: IDEMPOTENCY_KEY_REUSED},
                   summary="Claim due runs whose labels this agent covers (each run to exactly one agent)")
    def post(self, request: Request, workspace_slug: str, agent_id: str) -> Response:
        data = _valid(s.ClaimIn, request)
        agent = access_agent(self.principal, agent_id, action="flow_run:claim")

        def compute() -> tuple[int, dict]:
            claimed = claims.flow_runs_claim(
                actor=self.principal, agent=agent, limit=data["limit"], lease_seconds=data["lease_seconds"],
                lookahead_seconds=data["lookahead_seconds"],
            )
            return status.HTTP_200_OK, {"results": represent(s.ClaimedRunOut, claimed_runs(claimed), many=True)}

        return _idempotent(self, request, f"agent:{agent.pk}:claim", compute)


# --- concurrency limits -------------------------------------------------------------------------


class ConcurrencyLimitView(WorkspaceAPIView):
    scope_map = {"GET": "project:read", "PUT": "project:write", "DELETE": "project:write"}

    @extend_schema(responses=results_envelope("ConcurrencyLimits", s.ConcurrencyLimitOut),
                   summary="Task concurrency limits by tag")
    def get(self, request: Request, workspace_slug: str) -> Response:
        limits = concurrency.concurrency_limit_list(actor=self.principal)
        return Response({"results": s.ConcurrencyLimitOut(limits, many=True).data})

    @extend_schema(request=s.ConcurrencyLimitIn, responses=s.ConcurrencyLimitOut, summary="Set a tag's limit")
    def put(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.ConcurrencyLimitIn, request)
        row = concurrency.concurrency_limit_set(actor=self.principal, tag=data["tag"], limit=data["limit"])
        return Response(s.ConcurrencyLimitOut(row).data)

    @extend_schema(parameters=[OpenApiParameter("tag", OpenApiTypes.STR, required=True)], responses={204: None},
                   summary="Remove a tag's limit (?tag=)")
    def delete(self, request: Request, workspace_slug: str) -> Response:
        concurrency.concurrency_limit_delete(actor=self.principal, tag=_query(s.TagIn, request)["tag"])
        return Response(status=status.HTTP_204_NO_CONTENT)
