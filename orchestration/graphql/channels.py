"""GraphQL reads and mutations of notification channels and their delivery log.

Reads (under ``orchestration(workspace) { alerts { channels channel(id) deliveries(…) } }``) go
through the same selectors as REST: everyone in the workspace sees channels with the target masked;
``config`` and ``secret`` are null unless the viewer is an Admin. The mutations (Admins) follow the
orchestration mutations' conventions: errors in the payload, nothing written when they fail.
"""

from __future__ import annotations

from typing import Any, ClassVar

import graphene
from graphene.types.generic import GenericScalar

from accounts.authz import Principal
from accounts.graphql.context import GraphQLContext
from accounts.graphql.mutations import BaseMutation
from core.errors import InvalidInput
from orchestration.alerts import channels as channel_services
from orchestration.alerts.delivery import send_test_notification
from orchestration.selectors.projects import parse_id

from .mutations import _actor
from .types import _maybe, _page, _reading

MANAGE = "notification_channel:manage"


class ChannelType(graphene.ObjectType):
    class Meta:
        name = "NotificationChannel"

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    kind = graphene.String(required=True, description="email, webhook, slack or pagerduty.")
    target = graphene.String(required=True, description="Where it goes, masked (no secrets).")
    is_enabled = graphene.Boolean(required=True)
    created_at = graphene.DateTime(required=True)
    updated_at = graphene.DateTime(required=True)
    last_delivery_status = graphene.String(description="The newest delivery's status; null before any.")
    config = GenericScalar(description="The configuration: Admins only, null for everyone else.")
    secret = graphene.String(description="A webhook's signing secret: Admins only, null for everyone else.")


class AttemptType(graphene.ObjectType):
    class Meta:
        name = "DeliveryAttempt"

    number = graphene.Int(required=True)
    at = graphene.DateTime(required=True)
    status_code = graphene.Int()
    error = graphene.String(required=True)
    duration_ms = graphene.Int(required=True)
    request = GenericScalar(required=True, description="method, url (secrets masked), headers")
    response_excerpt = graphene.String(required=True)


class DeliveryType(graphene.ObjectType):
    class Meta:
        name = "NotificationDelivery"

    id = graphene.ID(required=True)
    channel_id = graphene.ID(required=True)
    channel_name = graphene.String(required=True)
    incident_id = graphene.ID()
    incident_title = graphene.String()
    event = graphene.String(required=True, description="opened, resolved or test.")
    status = graphene.String(required=True, description="pending, retrying, delivered or failed.")
    attempts = graphene.Int(required=True)
    next_attempt_at = graphene.DateTime()
    last_status_code = graphene.Int()
    last_error = graphene.String(required=True)
    created_at = graphene.DateTime(required=True)
    delivered_at = graphene.DateTime()
    attempt_rows = graphene.List(graphene.NonNull(AttemptType), required=True)

    @staticmethod
    def resolve_channel_name(delivery: Any, info: Any) -> str:
        return str(delivery.channel.name)

    @staticmethod
    def resolve_incident_title(delivery: Any, info: Any) -> str | None:
        return delivery.incident.title if delivery.incident_id else None

    @staticmethod
    def resolve_next_attempt_at(delivery: Any, info: Any) -> Any:
        return delivery.next_attempt_at if delivery.status in ("pending", "retrying") else None

    @staticmethod
    def resolve_attempt_rows(delivery: Any, info: Any) -> Any:
        return list(delivery.attempt_rows.all())


def _channel(principal: Principal, channel: Any) -> dict[str, Any]:
    return channel_services.channel_view(principal, channel)


def _channels(principal: Principal) -> list[dict[str, Any]]:
    return [_channel(principal, c) for c in channel_services.channels_visible_to(principal)]


def _channel_by_id(principal: Principal, id: str) -> dict[str, Any]:
    return _channel(principal, channel_services.access_channel(principal, id))


def _deliveries(principal: Principal, channel_id: str | None, incident_id: str | None, first: int) -> list[Any]:
    try:
        channel = parse_id(channel_id) if channel_id is not None else None
        incident = parse_id(incident_id) if incident_id is not None else None
    except Exception:
        return []  # an id that is not one names nothing
    return list(channel_services.deliveries_visible_to(principal, channel_id=channel, incident_id=incident)[:first])


class ChannelFields(graphene.ObjectType):
    """The channel fields of :class:`.alerts.AlertsType` (its root value is the viewer's Principal)."""

    channels = graphene.List(graphene.NonNull(ChannelType), required=True, description="By name.")
    channel = graphene.Field(ChannelType, id=graphene.ID(required=True),
                             description="One channel; null for any id you cannot see.")
    deliveries = graphene.List(
        graphene.NonNull(DeliveryType), required=True, channel_id=graphene.ID(), incident_id=graphene.ID(),
        first=graphene.Int(), description="The delivery log, newest first, with each delivery's attempts.",
    )

    @staticmethod
    def resolve_channels(principal: Principal, info: Any) -> Any:
        return _reading(_channels, principal)

    @staticmethod
    def resolve_channel(principal: Principal, info: Any, id: str) -> Any:
        return _maybe(_channel_by_id, principal, id)

    @staticmethod
    def resolve_deliveries(principal: Principal, info: Any, channel_id: str | None = None,
                           incident_id: str | None = None, first: int | None = None) -> Any:
        return _reading(_deliveries, principal, channel_id, incident_id, _page(first))


# --- mutations ----------------------------------------------------------------------------------


def _config(config: Any) -> Any:
    if config is not None and not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object.", code="invalid_config",
                           details={"config": ["Not an object."]})
    return config


class CreateNotificationChannel(BaseMutation):
    """Create a channel (Admin). A webhook channel's signing secret is in the answer."""

    class Arguments:
        workspace = graphene.String(required=True)
        name = graphene.String(required=True)
        kind = graphene.String(required=True, description="email, webhook, slack or pagerduty.")
        config = graphene.JSONString(required=True, description='e.g. {"url": "https://…"}')
        is_enabled = graphene.Boolean()

    channel = graphene.Field(ChannelType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, name: str, kind: str, config: Any,
                is_enabled: bool | None = None) -> CreateNotificationChannel:
        actor = _actor(context, workspace)
        channel = channel_services.notification_channel_create(
            actor, name=name, kind=kind, config=_config(config), is_enabled=True if is_enabled is None else is_enabled
        )
        return cls(channel=_channel(actor, channel), errors=[])


class UpdateNotificationChannel(BaseMutation):
    """Change a channel (Admin); ``rotateSecret`` replaces a webhook's signing secret."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)
        name = graphene.String()
        config = graphene.JSONString()
        is_enabled = graphene.Boolean()
        rotate_secret = graphene.Boolean()

    channel = graphene.Field(ChannelType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str, **changes: Any) -> UpdateNotificationChannel:
        actor = _actor(context, workspace)
        channel = channel_services.access_channel(actor, id, MANAGE)
        if "config" in changes:
            changes["config"] = _config(changes["config"])
        channel = channel_services.notification_channel_update(actor, channel, **changes)
        return cls(channel=_channel(actor, channel_services.access_channel(actor, channel.pk)), errors=[])


class DeleteNotificationChannel(BaseMutation):
    """Delete a channel and its delivery log (Admin)."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    ok = graphene.Boolean(required=True)
    failure_values: ClassVar[dict[str, Any]] = {"ok": False}

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> DeleteNotificationChannel:
        actor = _actor(context, workspace)
        channel_services.notification_channel_delete(actor, channel_services.access_channel(actor, id, MANAGE))
        return cls(ok=True, errors=[])


class SendTestNotification(BaseMutation):
    """Send a test message to a channel now (Admin); the delivery tells whether it arrived."""

    class Arguments:
        workspace = graphene.String(required=True)
        id = graphene.ID(required=True)

    delivery = graphene.Field(DeliveryType)

    @classmethod
    def perform(cls, context: GraphQLContext, workspace: str, id: str) -> SendTestNotification:
        actor = _actor(context, workspace)
        delivery = send_test_notification(actor, channel_services.access_channel(actor, id, MANAGE))
        return cls(delivery=delivery, errors=[])


class ChannelMutations(graphene.ObjectType):
    """Channel mutations, merged into the orchestration mutations."""

    create_notification_channel = CreateNotificationChannel.Field()
    update_notification_channel = UpdateNotificationChannel.Field()
    delete_notification_channel = DeleteNotificationChannel.Field()
    send_test_notification = SendTestNotification.Field()
