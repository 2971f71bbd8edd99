"""REST adapters of SLA policies and incidents: validate the input's types with a strict serializer,
call one selector or service (:mod:`orchestration.alerts.selectors`, :mod:`.policies`,
:mod:`.incidents`), render. Policies and incidents named in the URL are loaded through
``access_policy`` / ``access_incident``: a malformed id, a missing one, another workspace's and one
of a restricted project the caller cannot see all answer 404.

Viewers read (``sla:read``); Developers and up manage policies (``sla:manage``) and acknowledge,
snooze and resolve incidents (``incident:update``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.guard import WorkspaceAPIView
from core.pagination import results_envelope
from core.serializers import StrictInputSerializer
from orchestration.alerts import incidents as incident_services
from orchestration.alerts import policies
from orchestration.alerts import selectors as alerts
from orchestration.alerts.models import Incident, IncidentEvent, SlaPolicy
from orchestration.models import FlowRun

from .views import _query, _valid

MAX_INCIDENT_RUNS = 200


# --- inputs -------------------------------------------------------------------------------------
# Types only: the meaning (ranges, what each kind needs, scope) is checked by the service, so REST,
# GraphQL and registration give the same messages.


class _Labels(serializers.ListField):
    child = serializers.CharField(max_length=1000, allow_blank=True, trim_whitespace=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=1000, allow_null=True, required=False, **kwargs)


class PolicyUpdateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=1000, allow_blank=True, required=False)
    description = serializers.CharField(max_length=10_000, allow_blank=True, required=False)
    kind = serializers.CharField(max_length=50, required=False)
    project_id = serializers.UUIDField(allow_null=True, required=False, help_text="Null with flow_id: the workspace.")
    flow_id = serializers.UUIDField(allow_null=True, required=False)
    labels = _Labels(help_text="Runs must carry all of these.")
    threshold_seconds = serializers.IntegerField(allow_null=True, required=False, max_value=10**12,
                                                 min_value=-(10**12))
    consecutive_failures = serializers.IntegerField(required=False, max_value=10**12, min_value=-(10**12))
    predictive = serializers.BooleanField(required=False)
    history_size = serializers.IntegerField(required=False, max_value=10**12, min_value=-(10**12))
    agent_labels = _Labels()
    action = serializers.CharField(max_length=50, required=False)
    severity = serializers.CharField(max_length=50, required=False)
    is_paused = serializers.BooleanField(required=False)
    channel_ids = serializers.ListField(child=serializers.UUIDField(), max_length=100, required=False, allow_null=True)


class PolicyCreateIn(PolicyUpdateIn):
    name = serializers.CharField(max_length=1000, allow_blank=True)
    kind = serializers.CharField(max_length=50, help_text="start, duration, failure, freshness, agent or prestart.")


class PolicyPauseIn(StrictInputSerializer):
    paused = serializers.BooleanField()


class PolicyPreviewIn(StrictInputSerializer):
    kind = serializers.CharField(max_length=50, required=False)
    project_id = serializers.UUIDField(allow_null=True, required=False)
    flow_id = serializers.UUIDField(allow_null=True, required=False)
    history_size = serializers.IntegerField(required=False, max_value=10**12, min_value=-(10**12))


class IncidentFilterIn(serializers.Serializer):
    status = serializers.ChoiceField(choices=alerts.INCIDENT_STATUSES, required=False,
                                     help_text="active = open or acknowledged.")
    flow = serializers.UUIDField(required=False)
    flow_run = serializers.UUIDField(required=False)
    policy = serializers.UUIDField(required=False)


class SnoozeIn(StrictInputSerializer):
    minutes = serializers.IntegerField(max_value=10**9, min_value=-(10**9), help_text="1 to 10080 (7 days).")


class EmptyIn(StrictInputSerializer):
    pass


# --- outputs ------------------------------------------------------------------------------------


class PolicyOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField()
    project_id = serializers.UUIDField(allow_null=True)
    project_name = serializers.CharField(source="project.name", allow_null=True)
    flow_id = serializers.UUIDField(allow_null=True)
    flow_name = serializers.CharField(source="flow.name", allow_null=True)
    labels = serializers.ListField(child=serializers.CharField())
    threshold_seconds = serializers.IntegerField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    predictive = serializers.BooleanField()
    history_size = serializers.IntegerField()
    agent_labels = serializers.ListField(child=serializers.CharField())
    action = serializers.CharField()
    severity = serializers.CharField()
    is_paused = serializers.BooleanField()
    from_registration = serializers.BooleanField()
    channel_ids = serializers.SerializerMethodField()
    active_incident_count = serializers.IntegerField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_channel_ids(self, policy: SlaPolicy) -> list[str]:
        return [str(pk) for pk in alerts.policy_channel_ids(policy)]


class PreviewFlowOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    project_id = serializers.UUIDField()
    project_name = serializers.CharField(source="project.name")


class PreviewP95Out(serializers.Serializer):
    flow_id = serializers.UUIDField()
    flow_name = serializers.CharField()
    p95_seconds = serializers.FloatField(allow_null=True, help_text="Null: no successful run yet.")
    sample_size = serializers.IntegerField()


class PreviewOut(serializers.Serializer):
    flows = PreviewFlowOut(many=True, help_text=f"By name, at most {alerts.PREVIEW_FLOW_LIMIT}.")
    flow_count = serializers.IntegerField()
    p95 = PreviewP95Out(many=True, help_text="Duration policies: each flow's p95 of its last history_size successes.")


class IncidentOut(serializers.Serializer):
    id = serializers.UUIDField()
    policy_id = serializers.UUIDField(allow_null=True)
    policy_name = serializers.CharField()
    kind = serializers.CharField()
    severity = serializers.CharField()
    title = serializers.CharField()
    cause = serializers.CharField()
    status = serializers.CharField()
    flow_id = serializers.UUIDField(allow_null=True)
    flow_name = serializers.CharField(source="flow.name", allow_null=True)
    run_count = serializers.IntegerField()
    opened_at = serializers.DateTimeField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    snoozed_until = serializers.DateTimeField(allow_null=True)


class IncidentRunOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    flow_id = serializers.UUIDField()
    flow_name = serializers.CharField(source="flow.name")
    state_type = serializers.CharField()
    state_name = serializers.CharField()
    scheduled_start = serializers.DateTimeField()


class IncidentEventOut(serializers.Serializer):
    kind = serializers.CharField()
    message = serializers.CharField()
    actor = serializers.CharField()
    details = serializers.JSONField()
    at = serializers.DateTimeField()


class IncidentDetailOut(IncidentOut):
    details = serializers.JSONField()
    acknowledged_by = serializers.CharField()
    resolved_by = serializers.CharField()
    runs = IncidentRunOut(many=True, help_text=f"The runs you can see, newest first, at most {MAX_INCIDENT_RUNS}.")
    events = IncidentEventOut(many=True, help_text="The timeline, oldest first.")


# --- helpers ------------------------------------------------------------------------------------


class IncidentCursorPagination(CursorPagination):
    """Newest opened first; stable under inserts."""

    ordering = ("-opened_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


def _policy_body(principal: Any, policy_id: Any) -> dict[str, Any]:
    """The policy as the list shows it (counts and channels loaded), read again after a write."""
    return PolicyOut(alerts.access_policy(principal, policy_id)).data


def _incident_body(principal: Any, incident: Incident) -> dict[str, Any]:
    runs: list[FlowRun] = alerts.incident_runs_for(principal, [incident.pk], MAX_INCIDENT_RUNS)[incident.pk]
    events: list[IncidentEvent] = alerts.incident_events_for(incident.workspace_id, [incident.pk])[incident.pk]
    data = IncidentOut(incident).data
    data.update(details=incident.details, acknowledged_by=incident.acknowledged_by, resolved_by=incident.resolved_by,
                runs=IncidentRunOut(runs, many=True).data, events=IncidentEventOut(events, many=True).data)
    return data


# --- policies -----------------------------------------------------------------------------------


class PolicyListView(WorkspaceAPIView):
    scope_map = {"GET": "sla:read", "POST": "sla:manage"}

    @extend_schema(responses=results_envelope("SlaPolicies", PolicyOut), summary="SLA policies you can see, by name")
    def get(self, request: Request, workspace_slug: str) -> Response:
        found = alerts.policies_visible_to(self.principal)
        return Response({"results": PolicyOut(found, many=True).data})

    @extend_schema(request=PolicyCreateIn, responses={201: PolicyOut}, summary="Create an SLA policy")
    def post(self, request: Request, workspace_slug: str) -> Response:
        policy = policies.sla_policy_create(self.principal, **_valid(PolicyCreateIn, request))
        return Response(_policy_body(self.principal, policy.pk), status=status.HTTP_201_CREATED)


class PolicyPreviewView(WorkspaceAPIView):
    scope_map = {"POST": "sla:read"}

    @extend_schema(request=PolicyPreviewIn, responses=PreviewOut,
                   summary="The flows a policy with this scope covers and, for duration, each flow's p95")
    def post(self, request: Request, workspace_slug: str) -> Response:
        preview = alerts.policy_preview(self.principal, **_valid(PolicyPreviewIn, request))
        return Response(PreviewOut(preview).data)


class PolicyDetailView(WorkspaceAPIView):
    scope_map = {"GET": "sla:read", "PATCH": "sla:manage", "DELETE": "sla:manage"}

    @extend_schema(responses=PolicyOut)
    def get(self, request: Request, workspace_slug: str, policy_id: str) -> Response:
        return Response(_policy_body(self.principal, policy_id))

    @extend_schema(request=PolicyUpdateIn, responses=PolicyOut, summary="Change some of a policy's fields")
    def patch(self, request: Request, workspace_slug: str, policy_id: str) -> Response:
        data = _valid(PolicyUpdateIn, request)
        policy = alerts.access_policy(self.principal, policy_id, "sla:manage")
        policies.sla_policy_update(self.principal, policy, **data)
        return Response(_policy_body(self.principal, policy.pk))

    @extend_schema(responses={204: None}, summary="Delete a policy (its open incidents are resolved)")
    def delete(self, request: Request, workspace_slug: str, policy_id: str) -> Response:
        policies.sla_policy_delete(self.principal, alerts.access_policy(self.principal, policy_id, "sla:manage"))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PolicyPauseView(WorkspaceAPIView):
    scope_map = {"POST": "sla:manage"}

    @extend_schema(request=PolicyPauseIn, responses=PolicyOut, summary="Pause or resume a policy")
    def post(self, request: Request, workspace_slug: str, policy_id: str) -> Response:
        data = _valid(PolicyPauseIn, request)
        policy = alerts.access_policy(self.principal, policy_id, "sla:manage")
        policies.sla_policy_set_paused(self.principal, policy, data["paused"])
        return Response(_policy_body(self.principal, policy.pk))


# --- incidents ----------------------------------------------------------------------------------


class IncidentListView(WorkspaceAPIView):
    scope_map = {"GET": "sla:read"}
    pagination_class = IncidentCursorPagination

    @extend_schema(
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=list(alerts.INCIDENT_STATUSES)),
                    OpenApiParameter("flow", OpenApiTypes.UUID), OpenApiParameter("flow_run", OpenApiTypes.UUID),
                    OpenApiParameter("policy", OpenApiTypes.UUID), OpenApiParameter("limit", OpenApiTypes.INT)],
        responses=IncidentOut(many=True), summary="Incidents you can see, newest first",
    )
    def get(self, request: Request, workspace_slug: str) -> Response:
        query = _query(IncidentFilterIn, request)
        incidents = alerts.incidents_visible_to(
            self.principal, status=query.get("status"), flow_id=query.get("flow"), flow_run_id=query.get("flow_run"),
            policy_id=query.get("policy"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(incidents, request, view=self)
        return paginator.get_paginated_response(IncidentOut(page, many=True).data)


class IncidentDetailView(WorkspaceAPIView):
    scope_map = {"GET": "sla:read"}

    @extend_schema(responses=IncidentDetailOut, summary="An incident with its runs and timeline")
    def get(self, request: Request, workspace_slug: str, incident_id: str) -> Response:
        return Response(_incident_body(self.principal, alerts.access_incident(self.principal, incident_id)))


class _IncidentAction(WorkspaceAPIView):
    """A person's action on an incident; the reply is the incident as the action left it."""

    scope_map = {"POST": "incident:update"}

    def act(self, incident_id: str, service: Callable[..., Any], **kwargs: Any) -> Response:
        incident = alerts.access_incident(self.principal, incident_id, "incident:update")
        service(self.principal, incident, **kwargs)
        return Response(_incident_body(self.principal, alerts.access_incident(self.principal, incident.pk)))


class IncidentAcknowledgeView(_IncidentAction):
    @extend_schema(request=None, responses=IncidentDetailOut, summary="Acknowledge: someone is on it")
    def post(self, request: Request, workspace_slug: str, incident_id: str) -> Response:
        _valid(EmptyIn, request)
        return self.act(incident_id, incident_services.incident_acknowledge)


class IncidentSnoozeView(_IncidentAction):
    @extend_schema(request=SnoozeIn, responses=IncidentDetailOut, summary="Snooze for some minutes")
    def post(self, request: Request, workspace_slug: str, incident_id: str) -> Response:
        data = _valid(SnoozeIn, request)
        return self.act(incident_id, incident_services.incident_snooze, minutes=data["minutes"])


class IncidentResolveView(_IncidentAction):
    @extend_schema(request=None, responses=IncidentDetailOut, summary="Resolve by hand")
    def post(self, request: Request, workspace_slug: str, incident_id: str) -> Response:
        _valid(EmptyIn, request)
        return self.act(incident_id, incident_services.incident_resolve)


ws = "workspaces/<slug:workspace_slug>/"
policy = ws + "sla-policies/<uuid:policy_id>/"
incident = ws + "incidents/<uuid:incident_id>/"

urlpatterns: list[URLPattern] = [
    path(ws + "sla-policies/", PolicyListView.as_view(), name="sla-policy-list"),
    path(ws + "sla-policies/preview/", PolicyPreviewView.as_view(), name="sla-policy-preview"),
    path(policy, PolicyDetailView.as_view(), name="sla-policy-detail"),
    path(policy + "pause/", PolicyPauseView.as_view(), name="sla-policy-pause"),
    path(ws + "incidents/", IncidentListView.as_view(), name="incident-list"),
    path(incident, IncidentDetailView.as_view(), name="incident-detail"),
    path(incident + "acknowledge/", IncidentAcknowledgeView.as_view(), name="incident-acknowledge"),
    path(incident + "snooze/", IncidentSnoozeView.as_view(), name="incident-snooze"),
    path(incident + "resolve/", IncidentResolveView.as_view(), name="incident-resolve"),
]
