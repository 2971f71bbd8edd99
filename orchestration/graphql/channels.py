"""GraphQL reads and mutations of notification channels and their delivery log."""

from __future__ import annotations

import graphene


class ChannelFields(graphene.ObjectType):
    """The channel fields of :class:`.alerts.AlertsType` (its root value is the viewer's Principal)."""


class ChannelMutations(graphene.ObjectType):
    """Channel mutations, merged into the orchestration mutations."""
