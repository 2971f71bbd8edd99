"""GraphQL reads of SLA alerts, under ``orchestration(workspace) { alerts { … } }``: policies (with
a coverage preview), incidents with their runs and timeline, alert badges for flows and runs; the
notification channels and their delivery log come from :class:`.channels.ChannelFields`.

    alerts {
      policies { id name kind flowName thresholdSeconds isPaused channelIds activeIncidentCount }
      policy(id: …) { … }
      policyPreview(input: {kind: "duration", flowId: …, historySize: 20}) { flowCount flows { id name }
                    p95 { flowId flowName p95Seconds sampleSize } }
      incidents(status: "active", flowId, flowRunId, policyId, first: 25) { id title cause status runCount
                runs(first: 10) { id name stateType } events { kind message actor at } }
      incident(id: …) { … }
      badges { flowId activeCount severity }
    }

Reads go through :mod:`orchestration.alerts.selectors` with the viewer's Principal (the root value),
so restricted projects the viewer cannot see are left out and another workspace's id is null. The
runs and timelines of a list of incidents cost one query each, however long the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import graphene
from graphene.types.generic import GenericScalar
from graphql_sync_dataloaders import SyncDataLoader

from accounts.authz import Principal
from accounts.graphql.context import get_context
from orchestration.alerts import selectors as alerts
from orchestration.alerts.models import Incident, SlaPolicy

from .channels import ChannelFields
from .types import FlowRefType, _invalid, _maybe, _page, _principal_of, _reading

DEFAULT_RUNS = 50
MAX_RUNS = 500


# --- loaders ------------------------------------------------------------------------------------


class _AlertLoaders:
    """Per request and workspace: the runs (by page size) and timelines of many incidents at once."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.events = SyncDataLoader(self._load_events)
        self._runs: dict[int, SyncDataLoader] = {}

    def runs(self, limit: int) -> SyncDataLoader:
        if limit not in self._runs:
            self._runs[limit] = SyncDataLoader(lambda keys: self._load_runs(keys, limit))
        return self._runs[limit]

    def _load_runs(self, keys: Sequence[Any], limit: int) -> list[Any]:
        try:
            found = alerts.incident_runs_for(self.principal, keys, limit)
            return [found.get(key, []) for key in keys]
        except Exception as exc:  # an error on the fields that asked, not the whole operation
            return [exc] * len(keys)

    def _load_events(self, keys: Sequence[Any]) -> list[Any]:
        try:
            found = alerts.incident_events_for(self.principal.workspace.pk, keys)
            return [found.get(key, []) for key in keys]
        except Exception as exc:
            return [exc] * len(keys)


def _loaders(info: Any, obj: Any) -> _AlertLoaders:
    holder = get_context(info).loaders
    by_workspace: dict[Any, _AlertLoaders] | None = getattr(holder, "alerts", None)
    if by_workspace is None:
        by_workspace = {}
        setattr(holder, "alerts", by_workspace)  # noqa: B010 - the accounts Loaders declare no such field
    found = by_workspace.get(obj.workspace_id)
    if found is None:
        found = by_workspace[obj.workspace_id] = _AlertLoaders(_principal_of(info, obj))
    return found


# --- types --------------------------------------------------------------------------------------


class SlaPolicyType(graphene.ObjectType):
    class Meta:
        name = "SlaPolicy"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    description = graphene.String(required=True)
    kind = graphene.String(required=True, description="start, duration, failure, freshness, agent or prestart.")
    project_id = graphene.ID()
    project_name = graphene.String()
    flow_id = graphene.ID()
    flow_name = graphene.String()
    labels = graphene.List(graphene.NonNull(graphene.String), required=True, description="Runs carry all of these.")
    threshold_seconds = graphene.Int()
    consecutive_failures = graphene.Int(required=True)
    predictive = graphene.Boolean(required=True)
    history_size = graphene.Int(required=True)
    agent_labels = graphene.List(graphene.NonNull(graphene.String), required=True)
    action = graphene.String(required=True, description="none, cancel_run, fail_run or pause_schedules.")
    severity = graphene.String(required=True)
    is_paused = graphene.Boolean(required=True)
    from_registration = graphene.Boolean(required=True, description="Declared next to its flow in code.")
    channel_ids = graphene.List(graphene.NonNull(graphene.ID), required=True)
    active_incident_count = graphene.Int(required=True)
    created_at = graphene.DateTime(required=True)
    updated_at = graphene.DateTime(required=True)

    @staticmethod
    def resolve_project_name(policy: SlaPolicy, info: Any) -> str | None:
        return policy.project.name if policy.project is not None else None

    @staticmethod
    def resolve_flow_name(policy: SlaPolicy, info: Any) -> str | None:
        return policy.flow.name if policy.flow is not None else None

    @staticmethod
    def resolve_channel_ids(policy: SlaPolicy, info: Any) -> list[Any]:
        return alerts.policy_channel_ids(policy)


class IncidentRunType(graphene.ObjectType):
    class Meta:
        name = "IncidentRun"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    state_type = graphene.String(required=True)
    state_name = graphene.String(required=True)
    scheduled_start = graphene.DateTime(required=True)
    flow = graphene.Field(FlowRefType, required=True)


class IncidentEventType(graphene.ObjectType):
    class Meta:
        name = "IncidentEvent"

    kind = graphene.String(required=True)
    message = graphene.String(required=True)
    actor = graphene.String(required=True, description="Empty: Flowdeck itself.")
    at = graphene.DateTime(required=True)
    details = GenericScalar(required=True)


class IncidentType(graphene.ObjectType):
    class Meta:
        name = "Incident"

    id = graphene.ID(required=True)
    policy_id = graphene.ID(description="Null once the policy is deleted.")
    policy_name = graphene.String(required=True)
    kind = graphene.String(required=True)
    severity = graphene.String(required=True)
    title = graphene.String(required=True)
    cause = graphene.String(required=True)
    details = GenericScalar(required=True)
    status = graphene.String(required=True, description="open, acknowledged or resolved.")
    snoozed_until = graphene.DateTime()
    opened_at = graphene.DateTime(required=True)
    acknowledged_at = graphene.DateTime()
    acknowledged_by = graphene.String(required=True)
    resolved_at = graphene.DateTime()
    resolved_by = graphene.String(required=True, description="Empty when it resolved by itself.")
    flow_id = graphene.ID()
    flow_name = graphene.String()
    run_count = graphene.Int(required=True, description="Every run it covers, seen or not.")
    runs = graphene.List(graphene.NonNull(IncidentRunType), required=True,
                         first=graphene.Int(default_value=DEFAULT_RUNS),
                         description="The runs you can see, newest scheduled first.")
    events = graphene.List(graphene.NonNull(IncidentEventType), required=True, description="Oldest first.")

    @staticmethod
    def resolve_flow_name(incident: Incident, info: Any) -> str | None:
        return incident.flow.name if incident.flow is not None else None

    @staticmethod
    def resolve_runs(incident: Incident, info: Any, first: int | None = None) -> Any:
        return _loaders(info, incident).runs(_page(first, DEFAULT_RUNS, MAX_RUNS)).load(incident.pk)

    @staticmethod
    def resolve_events(incident: Incident, info: Any) -> Any:
        return _loaders(info, incident).events.load(incident.pk)


class PreviewP95Type(graphene.ObjectType):
    class Meta:
        name = "PolicyPreviewP95"

    flow_id = graphene.ID(required=True)
    flow_name = graphene.String(required=True)
    p95_seconds = graphene.Float(description="Null: no successful run yet.")
    sample_size = graphene.Int(required=True)


class PreviewType(graphene.ObjectType):
    class Meta:
        name = "PolicyPreview"

    flows = graphene.List(graphene.NonNull(FlowRefType), required=True,
                          description=f"The flows covered, by name (at most {alerts.PREVIEW_FLOW_LIMIT}).")
    flow_count = graphene.Int(required=True)
    p95 = graphene.List(graphene.NonNull(PreviewP95Type), required=True,
                        description="Duration policies: each flow's p95 of its last historySize successful runs.")


class PolicyPreviewInput(graphene.InputObjectType):
    class Meta:
        name = "PolicyPreviewInput"

    kind = graphene.String()
    project_id = graphene.ID()
    flow_id = graphene.ID()
    history_size = graphene.Int()


class AlertBadgeType(graphene.ObjectType):
    class Meta:
        name = "AlertBadge"

    flow_id = graphene.ID(required=True)
    active_count = graphene.Int(required=True, description="Open or acknowledged incidents.")
    severity = graphene.String(required=True, description="The worst: critical, else warning.")


class AlertsType(ChannelFields, graphene.ObjectType):
    """One workspace's SLA policies, incidents and notification channels, as the viewer may see them."""

    class Meta:
        name = "Alerts"

    policies = graphene.List(graphene.NonNull(SlaPolicyType), description="Policies you can see, by name.")
    policy = graphene.Field(SlaPolicyType, id=graphene.ID(required=True), description="Null for any id you cannot see.")
    policy_preview = graphene.Field(PreviewType, input=PolicyPreviewInput(required=True),
                                    description="What a policy with this scope would cover, before saving it.")
    incidents = graphene.List(
        graphene.NonNull(IncidentType),
        status=graphene.String(description="open, acknowledged, resolved or active (open or acknowledged)."),
        flow_id=graphene.ID(), flow_run_id=graphene.ID(), policy_id=graphene.ID(),
        first=graphene.Int(default_value=25),
        description="Newest first.",
    )
    incident = graphene.Field(IncidentType, id=graphene.ID(required=True),
                              description="Null for any id you cannot see.")
    badges = graphene.List(graphene.NonNull(AlertBadgeType), description="Flows with active incidents.")

    @staticmethod
    def resolve_policies(principal: Principal, info: Any) -> Any:
        return _reading(alerts.policies_visible_to, principal)

    @staticmethod
    def resolve_policy(principal: Principal, info: Any, id: str) -> Any:
        return _maybe(alerts.access_policy, principal, id)

    @staticmethod
    def resolve_policy_preview(principal: Principal, info: Any, input: dict) -> Any:
        given = dict(input)
        return _reading(lambda: alerts.policy_preview(principal, **given))

    @staticmethod
    def resolve_incidents(
        principal: Principal, info: Any, status: str | None = None, flow_id: str | None = None,
        flow_run_id: str | None = None, policy_id: str | None = None, first: int | None = None,
    ) -> Any:
        limit = _page(first)
        if status is not None and status not in alerts.INCIDENT_STATUSES:
            raise _invalid(f"status must be one of {', '.join(alerts.INCIDENT_STATUSES)}.")
        incidents = _reading(lambda: alerts.incidents_visible_to(
            principal, status=status, flow_id=flow_id, flow_run_id=flow_run_id, policy_id=policy_id))
        return list(incidents[:limit])

    @staticmethod
    def resolve_incident(principal: Principal, info: Any, id: str) -> Any:
        return _maybe(alerts.access_incident, principal, id)

    @staticmethod
    def resolve_badges(principal: Principal, info: Any) -> Any:
        badges = _reading(alerts.alert_badges, principal)
        return [AlertBadgeType(flow_id=flow_id, active_count=count, severity=severity)
                for flow_id, (count, severity) in badges.items()]
