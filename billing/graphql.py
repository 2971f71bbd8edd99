"""The billing part of the GraphQL schema: the plans on offer and a workspace's usage.

    billing(workspace: "acme") {
      usage { plan planName periodStart periodEnd runsUsed runsLimit seatsUsed seatsLimit
              logBytes logRetentionDays runsByDay { day runs } runsByFlow { flowId flowName runs } }
    }
    plans { code name seats runsPerPeriod pricePerSeatCents }

``billing`` is null for a slug the viewer is not a member of (like ``orchestration``). A creation
refused by a quota answers the mutation's ``errors`` with code ``quota_exceeded``, as REST's 402.
"""

from __future__ import annotations

from typing import Any

import graphene

from accounts.authz import NotFound, Principal
from accounts.graphql.context import get_context
from accounts.graphql.errors import graphql_error
from core.errors import PermissionDenied

from .models import Plan
from .usage import UsageReport, usage_report


class PlanType(graphene.ObjectType):
    class Meta:
        name = "Plan"

    code = graphene.String(required=True)
    name = graphene.String(required=True)
    description = graphene.String(required=True)
    seats = graphene.Int(description="Seats included; null: as many as the subscription pays for.")
    runs_per_period = graphene.Int(description="Flow runs per billing period; null: unlimited.")
    metered_overage = graphene.Boolean(required=True)
    log_retention_days = graphene.Int(required=True)
    price_per_seat_cents = graphene.Int(required=True)
    overage_cents_per_1000_runs = graphene.Int(required=True)
    self_serve = graphene.Boolean(required=True)


class DayCountType(graphene.ObjectType):
    class Meta:
        name = "UsageDay"

    day = graphene.Date(required=True)
    runs = graphene.Int(required=True)


class FlowCountType(graphene.ObjectType):
    class Meta:
        name = "UsageFlow"

    flow_id = graphene.ID(required=True)
    flow_name = graphene.String(required=True)
    runs = graphene.Int(required=True)


class UsageType(graphene.ObjectType):
    class Meta:
        name = "Usage"

    billing_enabled = graphene.Boolean(required=True)
    plan = graphene.String()
    plan_name = graphene.String()
    period_start = graphene.DateTime(required=True)
    period_end = graphene.DateTime(required=True)
    runs_used = graphene.Int(required=True)
    runs_limit = graphene.Int()
    overage_allowed = graphene.Boolean(required=True)
    seats_used = graphene.Int(required=True)
    seats_limit = graphene.Int()
    log_bytes = graphene.Float(required=True, description="Bytes of log text stored (a Float: may pass 2^31).")
    log_retention_days = graphene.Int(required=True)
    runs_by_day = graphene.List(graphene.NonNull(DayCountType), required=True)
    runs_by_flow = graphene.List(graphene.NonNull(FlowCountType), required=True)

    @staticmethod
    def resolve_runs_by_day(report: UsageReport, info: Any) -> list[dict]:
        return [{"day": day, "runs": n} for day, n in report.runs_by_day]

    @staticmethod
    def resolve_runs_by_flow(report: UsageReport, info: Any) -> list[dict]:
        return [{"flow_id": fid, "flow_name": name, "runs": n} for fid, name, n in report.runs_by_flow]


class BillingType(graphene.ObjectType):
    class Meta:
        name = "Billing"

    usage = graphene.Field(UsageType, required=True, description="This billing period's usage against the limits.")

    @staticmethod
    def resolve_usage(principal: Principal, info: Any) -> UsageReport:
        try:
            return usage_report(actor=principal)
        except (NotFound, PermissionDenied) as exc:
            raise graphql_error(exc) from None


class BillingQuery(graphene.ObjectType):
    billing = graphene.Field(
        BillingType,
        workspace=graphene.String(required=True, description="The workspace's slug."),
        description="A workspace's plan and usage; null for any slug you are not a member of.",
    )
    plans = graphene.List(graphene.NonNull(PlanType), required=True, description="The plans on offer.")

    @staticmethod
    def resolve_billing(root: Any, info: Any, workspace: str) -> Principal | None:
        return get_context(info).member_principal(workspace)

    @staticmethod
    def resolve_plans(root: Any, info: Any) -> list[Plan]:
        return list(Plan.objects.all())
