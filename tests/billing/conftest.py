"""Billing fixtures: billing turned on, a flow to create runs of, and plans with small limits so a
test reaches them quickly."""

from __future__ import annotations

from typing import Any

import pytest

from billing.models import Plan, Subscription, SubscriptionStatus
from billing.plans import ensure_default_plans
from billing.quotas import apply_limits_to_meter
from core.tenancy import workspace_scope
from tests.conftest import WorkspaceWorld
from tests.orchestration.factories import FlowVersionFactory


@pytest.fixture
def billing_on(settings: Any) -> None:
    settings.FLOWDECK_BILLING = True
    ensure_default_plans()


def set_free_runs(limit: int) -> None:
    """Free's run allowance, for this test only (the test's transaction rolls it back)."""
    ensure_default_plans()
    Plan.objects.filter(code="free").update(runs_per_period=limit)


def subscribe(world: WorkspaceWorld, plan: str, **fields: Any) -> Subscription:
    """Put the workspace on ``plan`` as a Stripe webhook would (the current period's meter takes
    the new limits), active unless ``status`` says."""
    ensure_default_plans()
    with workspace_scope([world.workspace.pk]):
        subscription, _ = Subscription.objects.unscoped().update_or_create(
            workspace=world.workspace,
            defaults={"plan": Plan.objects.get(code=plan), "status": fields.pop("status", SubscriptionStatus.ACTIVE),
                      **fields},
        )
    apply_limits_to_meter(world.workspace.pk)  # as the webhook that changed it would
    return subscription


def flow_of(world: WorkspaceWorld) -> Any:
    """A flow with an active version in the world's workspace."""
    return FlowVersionFactory(flow__project__workspace=world.workspace).flow
