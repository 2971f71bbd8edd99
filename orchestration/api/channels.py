"""REST adapters of notification channels and their delivery log.

``notification-channels/`` (GET: everyone in the workspace, the target masked; POST: Admins),
``notification-channels/<id>/`` (GET, PATCH — including ``{"rotate_secret": true}`` for a webhook
— and DELETE: Admins), ``notification-channels/<id>/test/`` (POST: Admins; sends a test now and
answers the delivery with its attempt) and ``notification-deliveries/`` (GET ``?channel=&incident=``,
newest first, cursor-paginated, each delivery with its attempts). Only Admins see a channel's
``config`` and a webhook's ``secret``; for everyone else both are null.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.guard import WorkspaceAPIView
from core.pagination import CreatedCursorPagination
from core.serializers import StrictInputSerializer
from orchestration.alerts import channels as channel_services
from orchestration.alerts.channels import access_channel, channel_view, channels_visible_to, deliveries_visible_to
from orchestration.alerts.delivery import send_test_notification
from orchestration.models import NotificationChannel, NotificationDelivery

from .views import _paginated, _query, _valid

READ = "notification_channel:read"
MANAGE = "notification_channel:manage"


# --- serializers --------------------------------------------------------------------------------


class ChannelCreateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.choices)
    config = serializers.JSONField(help_text='email: {"addresses": [...]}; webhook and slack: {"url"}; '
                                             'pagerduty: {"routing_key", "url"?}')
    is_enabled = serializers.BooleanField(required=False, default=True)


class ChannelUpdateIn(StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    config = serializers.JSONField(required=False, help_text="The whole configuration of the channel's kind.")
    is_enabled = serializers.BooleanField(required=False)
    rotate_secret = serializers.BooleanField(required=False, help_text="Webhook: replace the signing secret.")


class ChannelOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.CharField()
    target = serializers.CharField(help_text="Where it goes, masked (no secrets).")
    is_enabled = serializers.BooleanField()
    config = serializers.JSONField(allow_null=True, help_text="Admins only; null for everyone else.")
    secret = serializers.CharField(allow_null=True, help_text="A webhook's signing secret: Admins only.")
    last_delivery_status = serializers.CharField(allow_null=True)
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, instance: Any) -> Any:
        return super().to_representation(channel_view(self.context["principal"], instance))


class AttemptOut(serializers.Serializer):
    number = serializers.IntegerField()
    at = serializers.DateTimeField()
    request = serializers.JSONField(help_text="method, url (secrets masked), headers (no signature)")
    status_code = serializers.IntegerField(allow_null=True)
    response_excerpt = serializers.CharField()
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()


class DeliveryOut(serializers.Serializer):
    id = serializers.UUIDField()
    channel_id = serializers.UUIDField()
    channel_name = serializers.CharField()
    incident_id = serializers.UUIDField(allow_null=True)
    incident_title = serializers.CharField(allow_null=True)
    event = serializers.CharField(help_text="opened, resolved or test")
    status = serializers.CharField(help_text="pending, retrying, delivered or failed")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    payload = serializers.JSONField(help_text="What is sent (the same body on every try), secrets left out.")
    attempt_rows = AttemptOut(many=True)

    def to_representation(self, instance: Any) -> Any:
        return super().to_representation(delivery_view(instance))


def delivery_view(delivery: NotificationDelivery) -> dict[str, Any]:
    return {
        "id": delivery.pk, "channel_id": delivery.channel_id, "channel_name": delivery.channel.name,
        "incident_id": delivery.incident_id,
        "incident_title": delivery.incident.title if delivery.incident is not None else None,
        "event": delivery.event, "status": delivery.status, "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at if delivery.status in ("pending", "retrying") else None,
        "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
        "created_at": delivery.created_at, "delivered_at": delivery.delivered_at, "payload": delivery.payload,
        "attempt_rows": list(delivery.attempt_rows.all()),
    }


class DeliveryFilterIn(StrictInputSerializer):
    channel = serializers.UUIDField(required=False)
    incident = serializers.UUIDField(required=False)


# --- views --------------------------------------------------------------------------------------


class ChannelListView(WorkspaceAPIView):
    scope_map = {"GET": READ, "POST": MANAGE}
    pagination_class = CreatedCursorPagination

    @extend_schema(responses=ChannelOut(many=True), summary="Notification channels (targets masked)")
    def get(self, request: Request, workspace_slug: str) -> Response:
        return _paginated(self, request, channels_visible_to(self.principal), ChannelOut, principal=self.principal)

    @extend_schema(request=ChannelCreateIn, responses={201: ChannelOut},
                   summary="Create a channel (Admin); a webhook's secret is in the answer")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = _valid(ChannelCreateIn, request)
        channel = channel_services.notification_channel_create(self.principal, **data)
        return Response(ChannelOut(channel, context={"principal": self.principal}).data,
                        status=status.HTTP_201_CREATED)


class ChannelDetailView(WorkspaceAPIView):
    scope_map = {"GET": READ, "PATCH": MANAGE, "DELETE": MANAGE}

    @extend_schema(responses=ChannelOut)
    def get(self, request: Request, workspace_slug: str, channel_id: str) -> Response:
        channel = access_channel(self.principal, channel_id)
        return Response(ChannelOut(channel, context={"principal": self.principal}).data)

    @extend_schema(request=ChannelUpdateIn, responses=ChannelOut,
                   summary="Change a channel (Admin); rotate_secret replaces a webhook's secret")
    def patch(self, request: Request, workspace_slug: str, channel_id: str) -> Response:
        data = _valid(ChannelUpdateIn, request)
        channel = access_channel(self.principal, channel_id, MANAGE)
        channel = channel_services.notification_channel_update(self.principal, channel, **data)
        return Response(ChannelOut(access_channel(self.principal, channel.pk),
                                   context={"principal": self.principal}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_slug: str, channel_id: str) -> Response:
        channel_services.notification_channel_delete(self.principal,
                                                     access_channel(self.principal, channel_id, MANAGE))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelTestView(WorkspaceAPIView):
    scope_map = {"POST": MANAGE}

    @extend_schema(request=None, responses=DeliveryOut,
                   summary="Send a test notification now (Admin); answers the delivery and its attempt")
    def post(self, request: Request, workspace_slug: str, channel_id: str) -> Response:
        delivery = send_test_notification(self.principal, access_channel(self.principal, channel_id, MANAGE))
        return Response(DeliveryOut(delivery).data)


class DeliveryListView(WorkspaceAPIView):
    scope_map = {"GET": READ}
    pagination_class = CreatedCursorPagination

    @extend_schema(
        parameters=[OpenApiParameter("channel", OpenApiTypes.UUID), OpenApiParameter("incident", OpenApiTypes.UUID)],
        responses=DeliveryOut(many=True), summary="The delivery log, newest first, with each delivery's attempts",
    )
    def get(self, request: Request, workspace_slug: str) -> Response:
        filters = _query(DeliveryFilterIn, request)
        deliveries = deliveries_visible_to(self.principal, channel_id=filters.get("channel"),
                                           incident_id=filters.get("incident"))
        return _paginated(self, request, deliveries, DeliveryOut)


ws = "workspaces/<slug:workspace_slug>/"
channel = ws + "notification-channels/<uuid:channel_id>/"

urlpatterns: list[URLPattern] = [
    path(ws + "notification-channels/", ChannelListView.as_view(), name="notification-channel-list"),
    path(channel, ChannelDetailView.as_view(), name="notification-channel-detail"),
    path(channel + "test/", ChannelTestView.as_view(), name="notification-channel-test"),
    path(ws + "notification-deliveries/", DeliveryListView.as_view(), name="notification-delivery-list"),
]
