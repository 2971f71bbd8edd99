"""GraphQL mutations of SLA policies and incidents (the UI's actions), thin adapters over
:mod:`orchestration.alerts.policies` and :mod:`orchestration.alerts.incidents`.

They follow :mod:`.mutations`: errors in the payload (a service's ``invalid_policy`` with the field,
``name_taken``, ``not_found`` for another workspace's or a hidden id, ``permission_denied`` for a
Viewer), one savepoint each. The payload's policy or incident is read again through the selectors,
as the action left it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import graphene

from accounts.graphql.context import GraphQLContext
from accounts.graphql.mutations import BaseMutation
from orchestration import selectors
from orchestration.alerts import incidents as incident_services
from orchestration.alerts import policies
from orchestration.alerts import selectors as alerts

from .alerts import IncidentType, SlaPolicyType
from .mutations import _actor


class SlaPolicyInput(graphene.InputObjectType):
    """The fields of a policy; on update, only those given change (null clears a scope)."""

    class Meta:
        name = "SlaPolicyInput"

    name = graphene.String()
    description = graphene.String()
    kind = graphene.String(description="start, duration, failure, freshness, agent or prestart.")
    project_id = graphene.ID()
    flow_id = graphene.ID()
    labels = graphene.List(graphene.NonNull(graphene.String))
    threshold_seconds = graphene.Int()
    consecutive_failures = graphene.Int()
    predictive = graphene.Boolean()
    history_size = graphene.Int()
    agent_labels = graphene.List(graphene.NonNull(graphene.String))
    action = graphene.String(description="none, cancel_run, fail_run or pause_schedules.")
    severity = graphene.String(description="critical or warning.")
    is_paused = graphene.Boolean()
    channel_ids = graphene.List(graphene.NonNull(graphene.ID))


def _fields(actor: Any, given: Any) -> dict[str, Any]:
    """The input's fields that were given (graphene's input object is a dict of those only). A
    project or flow id is looked up first, as every mutation naming an object does: another
    workspace's or a hidden one is ``not_found``."""
    fields = dict(given)
    if fields.get("project_id") is not None:
        selectors.access_project(actor, fields["project_id"])
    if fields.get("flow_id") is not None:
        selectors.access_flow(actor, fields["flow_id"])
    return fields


class CreateSlaPolicy(BaseMutation):
    """Create an SLA policy (Developer and up)."""

    class Arguments:
        workspace = graphene.String(required=True)
        input = SlaPolicyInput(required=True)

    policy = graphene.Field(SlaPolicyType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, input: Any) -> CreateSlaPolicy:
        actor = _actor(context, workspace)
        policy = policies.sla_policy_create(actor, **_fields(actor, input))
        return cls(policy=alerts.access_policy(actor, policy.pk), errors=[])


class _PolicyMutation(BaseMutation):
    class Meta:
        abstract = True

    policy = graphene.Field(SlaPolicyType)

    @staticmethod
    def _policy(context: GraphQLContext, workspace: str, id: str) -> tuple[Any, Any]:
        actor = _actor(context, workspace)
        return actor, alerts.access_policy(actor, id, "sla:manage")


class UpdateSlaPolicy(_PolicyMutation):
    """Change some of a policy's fields."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)
        input = SlaPolicyInput(required=True)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str, input: Any) -> UpdateSlaPolicy:
        actor, policy = cls._policy(context, workspace, id)
        policies.sla_policy_update(actor, policy, **_fields(actor, input))
        return cls(policy=alerts.access_policy(actor, policy.pk), errors=[])


class SetSlaPolicyPaused(_PolicyMutation):
    """Pause (the evaluator skips it) or resume a policy."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)
        paused = graphene.Boolean(required=True)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str, paused: bool) -> SetSlaPolicyPaused:
        actor, policy = cls._policy(context, workspace, id)
        policies.sla_policy_set_paused(actor, policy, paused)
        return cls(policy=alerts.access_policy(actor, policy.pk), errors=[])


class DeleteSlaPolicy(_PolicyMutation):
    """Delete a policy; its open incidents are resolved and kept."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    ok = graphene.Boolean(required=True)
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> DeleteSlaPolicy:
        actor, policy = cls._policy(context, workspace, id)
        policies.sla_policy_delete(actor, policy)
        return cls(ok=True, errors=[])


class _IncidentMutation(BaseMutation):
    class Meta:
        abstract = True

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    incident = graphene.Field(IncidentType)
    service: ClassVar[Callable[..., Any]]

    @classmethod
    def _act(cls, context: GraphQLContext, workspace: str, id: str, **kwargs: Any) -> Any:
        actor = _actor(context, workspace)
        incident = alerts.access_incident(actor, id, "incident:update")
        cls.service(actor, incident, **kwargs)
        return cls(incident=alerts.access_incident(actor, incident.pk), errors=[])


class AcknowledgeIncident(_IncidentMutation):
    """Say someone is on it (Developer and up)."""

    service = staticmethod(incident_services.incident_acknowledge)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> AcknowledgeIncident:
        return cls._act(context, workspace, id)


class SnoozeIncident(_IncidentMutation):
    """Silence an incident for some minutes."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)
        minutes = graphene.Int(required=True)

    service = staticmethod(incident_services.incident_snooze)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str, minutes: int) -> SnoozeIncident:
        return cls._act(context, workspace, id, minutes=minutes)


class ResolveIncident(_IncidentMutation):
    """Resolve an incident by hand."""

    service = staticmethod(incident_services.incident_resolve)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> ResolveIncident:
        return cls._act(context, workspace, id)


class AlertMutations(graphene.ObjectType):
    """Policy and incident mutations, merged into the orchestration mutations."""

    create_sla_policy = CreateSlaPolicy.Field()
    update_sla_policy = UpdateSlaPolicy.Field()
    set_sla_policy_paused = SetSlaPolicyPaused.Field()
    delete_sla_policy = DeleteSlaPolicy.Field()
    acknowledge_incident = AcknowledgeIncident.Field()
    snooze_incident = SnoozeIncident.Field()
    resolve_incident = ResolveIncident.Field()
