"""GraphQL reads of SLA alerts, under ``orchestration(workspace) { alerts { … } }``: policies (with
a coverage preview), incidents with their runs and timeline, alert badges for flows and runs; the
notification channels and their delivery log come from :class:`.channels.ChannelFields`."""

from __future__ import annotations

from typing import Any

import graphene

from accounts.authz import Principal, can

from .channels import ChannelFields


class AlertsType(ChannelFields, graphene.ObjectType):
    """One workspace's SLA policies, incidents and notification channels, as the viewer may see them."""

    class Meta:
        name = "Alerts"

    # What the viewer may do, so the web app shows only the buttons that work.
    can_manage_policies = graphene.Boolean(required=True)
    can_update_incidents = graphene.Boolean(required=True)
    can_manage_channels = graphene.Boolean(required=True)

    @staticmethod
    def resolve_can_manage_policies(principal: Principal, info: Any) -> bool:
        return can(principal, "sla:manage")

    @staticmethod
    def resolve_can_update_incidents(principal: Principal, info: Any) -> bool:
        return can(principal, "incident:update")

    @staticmethod
    def resolve_can_manage_channels(principal: Principal, info: Any) -> bool:
        return can(principal, "notification_channel:manage")
