"""REST adapters for orchestration: validate with a strict input serializer, call one service,
render. The guard (WorkspaceAPIView) has already resolved the workspace, the principal, the RLS
scope and the method's action; services authorize again on the object.

Agent POSTs (set-state, task-run batches, logs, heartbeats, claims) honour an ``Idempotency-Key``
header: a replay returns the stored response, the same key with another body is 422 (D4)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authz import NotFound
from core.api import WorkspaceAPIView
from core.errors import InvalidInput, ServiceError
from core.pagination import CreatedCursorPagination
from orchestration import selectors
from orchestration.models import Agent, FlowRun, FlowRunState, Schedule, StateType, TaskRun
from orchestration.services import flows as flow_services
from orchestration.services import projects as project_services

from . import serializers as s

MAX_IDEMPOTENCY_KEY = 200


class ServiceUnavailable(ServiceError):
    status_code = 501
    code = "not_implemented"


def _svc(name: str) -> ModuleType:
    """A service module written alongside this API; a clear 501 if it is not there yet."""
    try:
        return importlib.import_module(f"orchestration.services.{name}")
    except ImportError:  # pragma: no cover - only while the services are being written
        raise ServiceUnavailable(f"orchestration.services.{name} is not available.") from None


def _valid(serializer_class: type, request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


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


def _paginated(view: WorkspaceAPIView, request: Request, queryset: QuerySet, out: type, **context: Any) -> Response:
    paginator = CreatedCursorPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(out(page, many=True, context=context).data)


def _idempotent(view: WorkspaceAPIView, request: Request, scope: str, compute: Callable[[], tuple[int, dict]]) -> Response:
    key = request.headers.get("Idempotency-Key")
    if not key:
        code, body = compute()
        return Response(body, status=code)
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(f"An Idempotency-Key is at most {MAX_IDEMPOTENCY_KEY} characters.",
                           details={"Idempotency-Key": ["Too long."]})
    body = request.data if isinstance(request.data, dict) else {"body": request.data}
    code, data = _svc("idempotency").idempotent_call(
        workspace=view.workspace, scope=scope, key=key, body=body, compute=compute
    )
    response = Response(data, status=code)
    return response


def _body_ref(kind: str, loader: Callable[[], Any]) -> Any:
    """An object named in the request body: a missing one is a 400 about that field."""
    try:
        return loader()
    except NotFound:
        raise InvalidInput(f"{kind}: no such {kind} in this workspace.", code="invalid",
                           details={kind: ["Not found."]}) from None


class _Views(WorkspaceAPIView):
    """Shared look-ups (always within the request's workspace)."""

    def flow(self, flow_id: Any, action: str = "project:read") -> Any:
        return flow_services.flow_get(actor=self.principal, flow_id=flow_id, action=action)

    def flow_run(self, flow_run_id: Any, *, check_read: bool = False) -> FlowRun:
        run = FlowRun.objects.for_workspace(self.workspace).filter(pk=flow_run_id).first()
        if run is None:
            raise NotFound()
        if check_read:
            self.flow(run.flow_id)  # restricted projects hide their runs
        return run

    def agent(self, agent_id: Any) -> Agent:
        agent = Agent.objects.for_workspace(self.workspace).filter(pk=agent_id).first()
        if agent is None:
            raise NotFound()
        return agent

    def schedule(self, flow: Any, schedule_id: Any) -> Schedule:
        schedule = Schedule.objects.for_workspace(self.workspace).filter(flow=flow, pk=schedule_id).first()
        if schedule is None:
            raise NotFound()
        return schedule


# --- projects -----------------------------------------------------------------------------------


class ProjectListView(_Views):
    scope_map = {"GET": "project:read", "POST": "project:write"}

    @extend_schema(responses=s.ProjectOut(many=True), summary="Projects you can see")
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, project_services.project_list(actor=self.principal), s.ProjectOut)

    @extend_schema(request=s.ProjectCreateIn, responses={201: s.ProjectOut}, summary="Create a project")
    def post(self, request: Request, workspace_slug: str) -> Response:
        project = project_services.project_create(actor=self.principal, **_valid(s.ProjectCreateIn, request))
        return Response(s.ProjectOut(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(_Views):
    scope_map = {"GET": "project:read", "PATCH": "project:read", "DELETE": "project:read"}

    @extend_schema(responses=s.ProjectOut)
    def get(self, request: Request, workspace_slug: str, project_id: str) -> Response:
        return Response(s.ProjectOut(project_services.project_get(actor=self.principal, project_id=project_id)).data)

    @extend_schema(request=s.ProjectUpdateIn, responses=s.ProjectOut)
    def patch(self, request: Request, workspace_slug: str, project_id: str) -> Response:
        project = project_services.project_get(actor=self.principal, project_id=project_id)
        project = project_services.project_update(actor=self.principal, project=project,
                                                  **_valid(s.ProjectUpdateIn, request))
        return Response(s.ProjectOut(project).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, project_id: str) -> Response:
        project = project_services.project_get(actor=self.principal, project_id=project_id)
        project_services.project_delete(actor=self.principal, project=project)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- flows and versions -------------------------------------------------------------------------


class FlowFilterIn(drf_serializers.Serializer):
    project = drf_serializers.UUIDField(required=False)
    name = drf_serializers.CharField(max_length=200, required=False)


class FlowListView(_Views):
    scope_map = {"GET": "project:read"}

    @extend_schema(
        parameters=[OpenApiParameter("project", OpenApiTypes.UUID), OpenApiParameter("name", OpenApiTypes.STR)],
        responses=s.FlowOut(many=True), summary="Flows, optionally by project or name",
    )
    def get(self, request: Request, workspace_slug: str) -> Response:
        filters = _query(FlowFilterIn, request)
        flows = flow_services.flow_list(actor=self.principal, project_id=filters.get("project"), name=filters.get("name"))
        return _paginated(self, request, flows, s.FlowOut)


class FlowRegisterView(_Views):
    scope_map = {"POST": "flow:register"}

    @extend_schema(request=s.FlowRegisterIn, responses={201: s.FlowRegisterOut, 200: s.FlowRegisterOut},
                   summary="Register a flow's metadata (idempotent by content hash)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRegisterIn, request)
        version, created = flow_services.flow_register(
            actor=self.principal, project_name=data["project"], name=data["name"], metadata=data["metadata"]
        )
        flow = self.flow(version.flow_id)
        body = {"created": created, "flow": s.FlowOut(flow).data, "version": s.FlowVersionOut(version).data}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class FlowDetailView(_Views):
    scope_map = {"GET": "project:read", "PATCH": "project:read", "DELETE": "project:read"}

    @extend_schema(responses=s.FlowOut)
    def get(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        return Response(s.FlowOut(self.flow(flow_id)).data)

    @extend_schema(request=s.FlowUpdateIn, responses=s.FlowOut)
    def patch(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        data = _valid(s.FlowUpdateIn, request)
        flow = flow_services.flow_update(actor=self.principal, flow=self.flow(flow_id), fields=set(data), **data)
        return Response(s.FlowOut(flow).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        flow_services.flow_delete(actor=self.principal, flow=self.flow(flow_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlowVersionListView(_Views):
    scope_map = {"GET": "project:read"}

    @extend_schema(responses=s.FlowVersionOut(many=True), summary="A flow's versions, newest first")
    def get(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        versions = flow_services.flow_version_list(actor=self.principal, flow=self.flow(flow_id))
        return _paginated(self, request, versions, s.FlowVersionOut)


class FlowVersionArchiveView(_Views):
    scope_map = {"POST": "flow:register"}

    @extend_schema(request=s.VersionArchiveIn, responses=s.FlowVersionOut, summary="Archive (or restore) a version")
    def post(self, request: Request, workspace_slug: str, flow_id: str, version_id: str) -> Response:
        data = _valid(s.VersionArchiveIn, request)
        flow = self.flow(flow_id)
        version = flow_services.flow_version_get(actor=self.principal, flow=flow, version_id=version_id)
        version = flow_services.flow_version_archive(actor=self.principal, version=version, archived=data["archived"])
        return Response(s.FlowVersionOut(version).data)


class FlowVersionPinView(_Views):
    scope_map = {"POST": "flow:register"}

    @extend_schema(request=s.VersionPinIn, responses=s.FlowOut, summary="Pin (or unpin) a version as the active one")
    def post(self, request: Request, workspace_slug: str, flow_id: str, version_id: str) -> Response:
        data = _valid(s.VersionPinIn, request)
        flow = self.flow(flow_id)
        version = flow_services.flow_version_get(actor=self.principal, flow=flow, version_id=version_id)
        if data["pinned"]:
            flow = flow_services.flow_pin_version(actor=self.principal, flow=flow, version=version)
        else:
            flow = flow_services.flow_unpin_version(actor=self.principal, flow=flow)
        return Response(s.FlowOut(flow).data)


# --- schedules ----------------------------------------------------------------------------------


class ScheduleListView(_Views):
    scope_map = {"GET": "project:read", "POST": "project:write"}

    @extend_schema(responses=s.ScheduleOut(many=True))
    def get(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        flow = self.flow(flow_id)
        schedules = Schedule.objects.for_workspace(self.workspace).filter(flow=flow)
        return _paginated(self, request, schedules, s.ScheduleOut)

    @extend_schema(request=s.ScheduleIn, responses={201: s.ScheduleOut}, summary="Add a schedule")
    def post(self, request: Request, workspace_slug: str, flow_id: str) -> Response:
        data = _valid(s.ScheduleIn, request)
        schedule = _svc("schedules").schedule_create(actor=self.principal, flow=self.flow(flow_id), **data)
        return Response(s.ScheduleOut(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailView(_Views):
    scope_map = {"GET": "project:read", "PATCH": "project:write", "DELETE": "project:write"}

    @extend_schema(responses=s.ScheduleOut)
    def get(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        return Response(s.ScheduleOut(self.schedule(self.flow(flow_id), schedule_id)).data)

    @extend_schema(request=s.ScheduleUpdateIn, responses=s.ScheduleOut)
    def patch(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        data = _valid(s.ScheduleUpdateIn, request)
        schedule = self.schedule(self.flow(flow_id), schedule_id)
        schedule = _svc("schedules").schedule_update(actor=self.principal, schedule=schedule, **data)
        return Response(s.ScheduleOut(schedule).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        schedule = self.schedule(self.flow(flow_id), schedule_id)
        _svc("schedules").schedule_delete(actor=self.principal, schedule=schedule)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SchedulePauseView(_Views):
    scope_map = {"POST": "project:write"}

    @extend_schema(request=s.SchedulePauseIn, responses=s.ScheduleOut, summary="Pause or resume a schedule")
    def post(self, request: Request, workspace_slug: str, flow_id: str, schedule_id: str) -> Response:
        data = _valid(s.SchedulePauseIn, request)
        schedule = self.schedule(self.flow(flow_id), schedule_id)
        schedule = _svc("schedules").schedule_set_active(actor=self.principal, schedule=schedule,
                                                         is_active=data["active"])
        return Response(s.ScheduleOut(schedule).data)


# --- flow runs ----------------------------------------------------------------------------------


class FlowRunFilterIn(drf_serializers.Serializer):
    flow = drf_serializers.UUIDField(required=False)
    state_type = drf_serializers.ListField(child=drf_serializers.ChoiceField(choices=StateType.values),
                                           required=False, max_length=20)
    state_name = drf_serializers.CharField(max_length=32, required=False)
    labels = drf_serializers.ListField(child=drf_serializers.CharField(max_length=100), required=False, max_length=50)
    scheduled_before = drf_serializers.DateTimeField(required=False)
    scheduled_after = drf_serializers.DateTimeField(required=False)
    created_by = drf_serializers.ChoiceField(choices=FlowRun.CreatedBy.values, required=False)


def _flow_runs(view: _Views, filters: dict[str, Any]) -> QuerySet[FlowRun]:
    from orchestration.models import Flow

    visible = Flow.objects.for_workspace(view.workspace).filter(
        project__in=project_services.project_list(actor=view.principal)
    )
    runs = FlowRun.objects.for_workspace(view.workspace).filter(flow__in=visible)
    if "flow" in filters:
        runs = runs.filter(flow_id=filters["flow"])
    if filters.get("state_type"):
        runs = runs.filter(state_type__in=filters["state_type"])
    if "state_name" in filters:
        runs = runs.filter(state_name=filters["state_name"])
    if filters.get("labels"):
        runs = runs.filter(labels__contains=filters["labels"])
    if "scheduled_before" in filters:
        runs = runs.filter(scheduled_start__lt=filters["scheduled_before"])
    if "scheduled_after" in filters:
        runs = runs.filter(scheduled_start__gte=filters["scheduled_after"])
    if "created_by" in filters:
        runs = runs.filter(created_by_kind=filters["created_by"])
    return runs


def _created_by_kind(view: _Views) -> str:
    return FlowRun.CreatedBy.USER if view.principal.api_key is None else FlowRun.CreatedBy.API


class FlowRunListView(_Views):
    scope_map = {"GET": "project:read", "POST": "flow_run:create"}

    @extend_schema(
        parameters=[
            OpenApiParameter("flow", OpenApiTypes.UUID),
            OpenApiParameter("state_type", OpenApiTypes.STR, description="One or more (repeat or comma-separate)"),
            OpenApiParameter("state_name", OpenApiTypes.STR),
            OpenApiParameter("labels", OpenApiTypes.STR, description="Runs carrying all of these labels"),
            OpenApiParameter("scheduled_before", OpenApiTypes.DATETIME),
            OpenApiParameter("scheduled_after", OpenApiTypes.DATETIME),
            OpenApiParameter("created_by", OpenApiTypes.STR, enum=FlowRun.CreatedBy.values),
        ],
        responses=s.FlowRunOut(many=True), summary="Flow runs, newest first, with filters and a cursor",
    )
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, _flow_runs(self, _query(FlowRunFilterIn, request)), s.FlowRunOut)

    @extend_schema(request=s.FlowRunCreateIn, responses={201: s.FlowRunOut, 200: s.FlowRunOut},
                   summary="Quick run: create a flow run (a replayed idempotency_key returns the same run)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRunCreateIn, request)
        flow = _body_ref("flow", lambda: self.flow(data.pop("flow")))
        version_id = data.pop("flow_version", None)
        if version_id is not None:
            data["flow_version"] = _body_ref(
                "flow_version",
                lambda: flow_services.flow_version_get(actor=self.principal, flow=flow, version_id=version_id),
            )
        run, created = _svc("runs").flow_run_create(
            actor=self.principal, flow=flow, created_by_kind=_created_by_kind(self), **data
        )
        return Response(s.FlowRunOut(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class FlowRunBulkCreateView(_Views):
    scope_map = {"POST": "flow_run:create"}

    @extend_schema(request=s.FlowRunBulkCreateIn, responses={201: OpenApiTypes.OBJECT},
                   summary="Create up to 5,000 runs of one flow")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRunBulkCreateIn, request)
        flow = _body_ref("flow", lambda: self.flow(data["flow"]))
        runs = [dict(run) for run in data["runs"]]
        result = _svc("runs").flow_run_bulk_create(actor=self.principal, flow=flow, runs=runs)
        if isinstance(result, dict):
            return Response(result, status=status.HTTP_201_CREATED)
        created = list(result)
        return Response({"count": len(created), "ids": [str(getattr(r, "pk", r)) for r in created]},
                        status=status.HTTP_201_CREATED)


class FlowRunBulkActionView(_Views):
    scope_map = {"POST": "flow_run:update"}

    @extend_schema(request=s.FlowRunBulkActionIn, responses={200: s.BulkActionOut, 202: s.BulkActionOut},
                   summary="Cancel, mark or clear late every run matching a filter (in batches; a large "
                           "selection runs in the background: 202, follow bulk-actions/{id}/)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.FlowRunBulkActionIn, request)
        if data["action"] == "mark" and not data.get("state_type"):
            raise InvalidInput("'mark' needs a state_type.", details={"state_type": ["Required for mark."]})
        given = {k: v for k, v in dict(data["filters"]).items() if v not in (None, [])}
        filters: dict[str, Any] = {}
        if "flow" in given:
            filters["flow_id"] = _body_ref("flow", lambda: self.flow(given["flow"])).pk
        if "state_type" in given:
            filters["state_types"] = list(given["state_type"])
        for name in ("labels", "scheduled_before", "scheduled_after"):
            if name in given:
                filters[name] = given[name]
        bulk = _svc("bulk_actions").bulk_action_create(
            actor=self.principal, action=data["action"], filters=filters, state_type=data.get("state_type")
        )
        finished = bulk.status in ("finished", "failed")
        return Response(s.BulkActionOut(bulk).data, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED)


class BulkActionDetailView(_Views):
    scope_map = {"GET": "project:read"}

    @extend_schema(responses=s.BulkActionOut, summary="A bulk action's status and counts")
    def get(self, request: Request, workspace_slug: str, bulk_action_id: str) -> Response:
        bulk = _svc("bulk_actions").access_bulk_action(principal=self.principal, bulk_action_id=bulk_action_id)
        return Response(s.BulkActionOut(bulk).data)


class FlowRunDetailView(_Views):
    scope_map = {"GET": "project:read", "DELETE": "flow_run:update"}

    @extend_schema(responses=s.FlowRunDetailOut, summary="A flow run with its task runs and state history")
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        self.flow_run(flow_run_id, check_read=True)
        run = (
            FlowRun.objects.for_workspace(self.workspace)
            .prefetch_related(
                Prefetch("task_runs", queryset=TaskRun.objects.for_workspace(self.workspace).order_by("created_at")),
                Prefetch("states", queryset=FlowRunState.objects.for_workspace(self.workspace).order_by("timestamp", "id")),
            )
            .get(pk=flow_run_id)
        )
        return Response(s.FlowRunDetailOut(run).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        run = self.flow_run(flow_run_id, check_read=True)
        _svc("runs").flow_run_delete(actor=self.principal, flow_run=run)
        return Response(status=status.HTTP_204_NO_CONTENT)


class StateFilterIn(drf_serializers.Serializer):
    after = drf_serializers.IntegerField(min_value=0, max_value=2**62, required=False)
    limit = drf_serializers.IntegerField(min_value=1, max_value=1000, required=False, default=200)


class FlowRunStatesView(_Views):
    """The run's state history in the order it happened, paged by state id: a follower (the CLI's
    ``run --watch``) sees every state, however briefly the run held it."""

    scope_map = {"GET": "project:read"}

    @extend_schema(
        parameters=[OpenApiParameter("after", OpenApiTypes.INT), OpenApiParameter("limit", OpenApiTypes.INT)],
        responses=s.StateOut(many=True), summary="A run's state history; page with after",
    )
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        filters = _query(StateFilterIn, request)
        run = self.flow_run(flow_run_id, check_read=True)
        states = selectors.flow_run_states_list(workspace=self.workspace, flow_run=run, after=filters.get("after"),
                                                limit=filters["limit"])
        return Response({
            "results": s.StateOut(states, many=True).data,
            "next_after": states[-1].pk if states else filters.get("after"),
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


class FlowRunSetStateView(_Views):
    scope_map = {"POST": "flow_run:report_state"}

    @extend_schema(request=s.SetStateIn, responses={200: s.SetStateOut, 409: s.SetStateOut},
                   summary="Propose a state (agent/SDK). REJECT/ABORT → 409 with the current state; WAIT → 200")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        from orchestration.engine import ProposedState, flow_run_set_state

        data = _valid(s.SetStateIn, request)
        run = self.flow_run(flow_run_id)

        def compute() -> tuple[int, dict]:
            result = flow_run_set_state(
                actor=self.principal, flow_run_id=run.pk, workspace_id=self.workspace.pk,
                state=ProposedState(**dict(data["state"])), expected_version=data.get("expected_version"),
                attempt=data.get("attempt"),
            )
            return _set_state_body(result)

        return _idempotent(self, request, f"flow_run:{run.pk}:set_state", compute)


class _RunAction(_Views):
    scope_map = {"POST": "flow_run:update"}
    service = ""

    def act(self, request: Request, flow_run_id: str, **kwargs: Any) -> Response:
        run = self.flow_run(flow_run_id, check_read=True)
        result = getattr(_svc("runs"), self.service)(actor=self.principal, flow_run=run, **kwargs)
        run = result if isinstance(result, FlowRun) else FlowRun.objects.for_workspace(self.workspace).get(pk=run.pk)
        return Response(s.FlowRunOut(run).data)


class FlowRunCancelView(_RunAction):
    service = "flow_run_cancel"

    @extend_schema(request=None, responses=s.FlowRunOut,
                   summary="Cancel: CANCELLING while an agent holds the run (it confirms), else CANCELLED at once")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        _valid(EmptyIn, request)
        return self.act(request, flow_run_id)


class FlowRunRestartView(_RunAction):
    service = "flow_run_restart"

    @extend_schema(request=None, responses=s.FlowRunOut, summary="Restart from failed (failed and downstream tasks)")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        _valid(EmptyIn, request)
        return self.act(request, flow_run_id)


class FlowRunMarkView(_RunAction):
    service = "flow_run_mark"

    @extend_schema(request=s.MarkIn, responses=s.FlowRunOut, summary="Mark a run as a state")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.MarkIn, request)
        return self.act(request, flow_run_id, state_type=data["state_type"], message=data["message"])


class EmptyIn(s.StrictInputSerializer):
    pass


class FlowRunTaskRunsView(_Views):
    scope_map = {"GET": "project:read", "POST": "flow_run:report_state"}

    @extend_schema(responses=s.TaskRunOut(many=True), summary="A run's task runs")
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        run = self.flow_run(flow_run_id, check_read=True)
        task_runs = TaskRun.objects.for_workspace(self.workspace).filter(flow_run=run)
        return _paginated(self, request, task_runs, s.TaskRunOut)

    @extend_schema(request=s.TaskRunBatchIn, responses=OpenApiTypes.OBJECT,
                   summary="Report a batch of task-run states (agent); idempotent with Idempotency-Key")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.TaskRunBatchIn, request)
        run = self.flow_run(flow_run_id)
        reports = [
            {"task_key": r["task_key"], "map_index": r["map_index"], "state_type": r["state"]["type"],
             "state_name": r["state"]["name"], "message": r["state"]["message"],
             "result_ref": r["state"]["result_ref"], "expected_version": r.get("expected_version")}
            for r in data["reports"]
        ]

        def compute() -> tuple[int, dict]:
            results = _svc("task_runs").task_run_report_batch(
                actor=self.principal, flow_run=run, attempt=data["attempt"], reports=reports
            )
            return status.HTTP_200_OK, {"results": [_result_body(r) for r in results]}

        return _idempotent(self, request, f"flow_run:{run.pk}:task_runs", compute)


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


class LogFilterIn(drf_serializers.Serializer):
    level_gte = drf_serializers.IntegerField(min_value=0, max_value=100, required=False)
    task_run_id = drf_serializers.UUIDField(required=False)
    after_sequence = drf_serializers.IntegerField(min_value=-1, max_value=2**62, required=False)
    search = drf_serializers.CharField(max_length=200, required=False)
    limit = drf_serializers.IntegerField(min_value=1, max_value=1000, required=False, default=200)


class FlowRunLogsView(_Views):
    scope_map = {"GET": "log:read", "POST": "log:write"}

    @extend_schema(
        parameters=[OpenApiParameter("level_gte", OpenApiTypes.INT), OpenApiParameter("task_run_id", OpenApiTypes.UUID),
                    OpenApiParameter("after_sequence", OpenApiTypes.INT), OpenApiParameter("search", OpenApiTypes.STR),
                    OpenApiParameter("limit", OpenApiTypes.INT)],
        responses=s.LogEntryOut(many=True), summary="A run's logs; page with after_sequence",
    )
    def get(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        filters = _query(LogFilterIn, request)
        run = self.flow_run(flow_run_id, check_read=True)
        lines = list(_svc("logs").logs_list(
            actor=self.principal, flow_run=run, level_gte=filters.get("level_gte"),
            task_run_id=filters.get("task_run_id"), after_sequence=filters.get("after_sequence"),
            search=filters.get("search"), limit=filters["limit"],
        ))
        return Response({
            "results": s.LogEntryOut(lines, many=True).data,
            "next_after_sequence": lines[-1].sequence if lines else filters.get("after_sequence"),
        })

    @extend_schema(request=s.LogBatchIn, responses=s.CountOut,
                   summary="Send a batch of log lines (agent); unique per (run, sequence)")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.LogBatchIn, request)
        run = self.flow_run(flow_run_id)
        lines = [dict(line) for line in data["lines"]]

        def compute() -> tuple[int, dict]:
            count = _svc("logs").logs_ingest(actor=self.principal, flow_run=run, lines=lines)
            return status.HTTP_200_OK, {"count": count}

        return _idempotent(self, request, f"flow_run:{run.pk}:logs", compute)


class FlowRunHeartbeatView(_Views):
    scope_map = {"POST": "flow_run:report_state"}

    @extend_schema(request=s.FlowRunHeartbeatIn, responses=OpenApiTypes.OBJECT,
                   summary="Flow-run heartbeat: extends the lease; the reply says if cancellation was requested")
    def post(self, request: Request, workspace_slug: str, flow_run_id: str) -> Response:
        data = _valid(s.FlowRunHeartbeatIn, request)
        run = self.flow_run(flow_run_id)

        def compute() -> tuple[int, dict]:
            reply = _svc("heartbeats").flow_run_heartbeat(actor=self.principal, flow_run=run, attempt=data["attempt"],
                                                              lease_seconds=data["lease_seconds"])
            return status.HTTP_200_OK, _jsonable(reply)

        return _idempotent(self, request, f"flow_run:{run.pk}:heartbeat", compute)


# --- agents -------------------------------------------------------------------------------------


class AgentListView(_Views):
    scope_map = {"GET": "project:read", "POST": "agent:register"}

    @extend_schema(responses=s.AgentOut(many=True), summary="Agents with their health")
    def get(self, request: Request, workspace_slug: str) -> Response:
        agents = Agent.objects.for_workspace(self.workspace)
        return _paginated(self, request, agents, s.AgentOut, now=_db_now())

    @extend_schema(request=s.AgentRegisterIn, responses={201: s.AgentOut},
                   summary="Register (or re-register) an agent; service-account keys only")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.AgentRegisterIn, request)
        agent = _svc("agents").agent_register(actor=self.principal, **data)
        return Response(s.AgentOut(agent, context={"now": _db_now()}).data, status=status.HTTP_201_CREATED)


def _db_now() -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        value = cursor.fetchone()[0]
    return value if getattr(value, "tzinfo", None) else timezone.now()


class AgentHeartbeatView(_Views):
    scope_map = {"POST": "agent:heartbeat"}

    @extend_schema(request=s.AgentHeartbeatIn, responses=OpenApiTypes.OBJECT,
                   summary="Agent heartbeat (polled=true once per claim-loop cycle)")
    def post(self, request: Request, workspace_slug: str, agent_id: str) -> Response:
        data = _valid(s.AgentHeartbeatIn, request)
        agent = self.agent(agent_id)

        def compute() -> tuple[int, dict]:
            reply = _svc("agents").agent_heartbeat(actor=self.principal, agent=agent, polled=data["polled"],
                                                   flow_runs=data.get("flow_runs"))
            return status.HTTP_200_OK, _jsonable(reply)

        return _idempotent(self, request, f"agent:{agent.pk}:heartbeat", compute)


class AgentClaimView(_Views):
    scope_map = {"POST": "flow_run:claim"}

    @extend_schema(request=s.ClaimIn, responses=s.ClaimedRunOut(many=True),
                   summary="Claim due runs whose labels this agent covers (each run to exactly one agent)")
    def post(self, request: Request, workspace_slug: str, agent_id: str) -> Response:
        data = _valid(s.ClaimIn, request)
        agent = self.agent(agent_id)

        def compute() -> tuple[int, dict]:
            claimed = _svc("claims").flow_runs_claim(
                actor=self.principal, agent=agent, limit=data["limit"], lease_seconds=data["lease_seconds"],
                lookahead_seconds=data["lookahead_seconds"],
            )
            ids = [run.pk for run in claimed]
            runs = (
                FlowRun.objects.for_workspace(self.workspace).filter(pk__in=ids).select_related("flow_version")
                .prefetch_related(Prefetch("task_runs", queryset=TaskRun.objects.for_workspace(self.workspace)))
            ) if ids else []
            order = {pk: i for i, pk in enumerate(ids)}
            ordered = sorted(runs, key=lambda r: order[r.pk])
            return status.HTTP_200_OK, {"results": s.ClaimedRunOut(ordered, many=True).data}

        return _idempotent(self, request, f"agent:{agent.pk}:claim", compute)


# --- concurrency limits -------------------------------------------------------------------------


class TagIn(drf_serializers.Serializer):
    tag = drf_serializers.CharField(max_length=100)


class ConcurrencyLimitView(_Views):
    scope_map = {"GET": "project:read", "PUT": "project:write", "DELETE": "project:write"}

    @extend_schema(responses=s.ConcurrencyLimitOut(many=True), summary="Task concurrency limits by tag")
    def get(self, request: Request, workspace_slug: str) -> Response:
        limits = _svc("concurrency").concurrency_limit_list(actor=self.principal)
        return Response({"results": s.ConcurrencyLimitOut(limits, many=True).data})

    @extend_schema(request=s.ConcurrencyLimitIn, responses=s.ConcurrencyLimitOut, summary="Set a tag's limit")
    def put(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(s.ConcurrencyLimitIn, request)
        row = _svc("concurrency").concurrency_limit_set(actor=self.principal, tag=data["tag"], limit=data["limit"])
        return Response(s.ConcurrencyLimitOut(row).data)

    @extend_schema(parameters=[OpenApiParameter("tag", OpenApiTypes.STR, required=True)], responses={204: None},
                   summary="Remove a tag's limit (?tag=)")
    def delete(self, request: Request, workspace_slug: str) -> Response:
        tag = _query(TagIn, request)["tag"]
        _svc("concurrency").concurrency_limit_delete(actor=self.principal, tag=tag)
        return Response(status=status.HTTP_204_NO_CONTENT)
