"""A workspace's subscription row, locked for a change: the one a workspace without one gets
(Free) is created first, so the Stripe customer and Stripe's webhooks always have a row to write."""

from __future__ import annotations

from typing import Any

from . import selectors
from .models import Subscription


def locked_subscription(workspace_id: Any) -> Subscription:
    """Locked until the caller's transaction ends; call it scoped to the workspace (or bypassing RLS)."""
    rows = Subscription.objects.unscoped().select_for_update().filter(workspace_id=workspace_id)
    row = rows.first()
    if row is None:
        Subscription.objects.unscoped().bulk_create(
            [Subscription(workspace_id=workspace_id, plan=selectors.free_plan())], ignore_conflicts=True)
        row = rows.get()
    return row
