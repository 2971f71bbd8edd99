"""The plans Flowdeck offers out of the box. A data migration writes them; an operator may change
their figures in the admin afterwards. :func:`ensure_default_plans` writes any that are missing
(a database emptied by a test, an installation that deleted one by mistake)."""

from __future__ import annotations

from typing import Any

PLANS: list[dict[str, Any]] = [
    {
        "code": "free", "name": "Free", "position": 0, "self_serve": True,
        "description": "For trying Flowdeck and small teams.",
        "seats": 3, "runs_per_period": 10_000, "metered_overage": False, "log_retention_days": 7,
    },
    {
        "code": "standard", "name": "Standard", "position": 1, "self_serve": True,
        "description": "Per seat, with a larger run allowance and overage billed per 1,000 runs.",
        "seats": None, "runs_per_period": 100_000, "metered_overage": True, "log_retention_days": 30,
        "price_per_seat_cents": 4_000, "overage_cents_per_1000_runs": 500,
        "stripe_price_lookup_key": "flowdeck_standard_seat", "stripe_meter_event_name": "flowdeck_runs",
    },
    {
        "code": "enterprise", "name": "Enterprise", "position": 2, "self_serve": False,
        "description": "Custom limits set with us.",
        "seats": None, "runs_per_period": None, "metered_overage": False, "log_retention_days": 90,
    },
]


def ensure_default_plans(plan_model: Any = None) -> None:
    """Create the default plans that do not exist (existing rows keep an operator's figures)."""
    if plan_model is None:
        from billing.models import Plan as plan_model
    for plan in PLANS:
        plan_model.objects.get_or_create(code=plan["code"], defaults={k: v for k, v in plan.items() if k != "code"})
