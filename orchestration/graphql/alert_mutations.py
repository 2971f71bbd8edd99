"""GraphQL mutations of SLA policies and incidents (the UI's actions), thin adapters over
:mod:`orchestration.alerts.policies` and :mod:`orchestration.alerts.incidents`."""

from __future__ import annotations

import graphene


class AlertMutations(graphene.ObjectType):
    """Policy and incident mutations, merged into the orchestration mutations."""
