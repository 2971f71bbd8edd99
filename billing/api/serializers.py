"""Billing's REST shapes."""

from __future__ import annotations

from rest_framework import serializers

from billing.models import Plan
from billing.usage import UsageReport


class PlanOut(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = ["code", "name", "description", "seats", "runs_per_period", "metered_overage",
                  "log_retention_days", "price_per_seat_cents", "overage_cents_per_1000_runs", "self_serve"]


class DayCountOut(serializers.Serializer):
    day = serializers.DateField()
    runs = serializers.IntegerField()


class FlowCountOut(serializers.Serializer):
    flow_id = serializers.UUIDField()
    flow_name = serializers.CharField()
    runs = serializers.IntegerField()


class UsageOut(serializers.Serializer):
    billing_enabled = serializers.BooleanField(help_text="False: this installation runs without plans or limits.")
    plan = serializers.CharField(allow_null=True, help_text="The plan's code (free, standard, enterprise).")
    plan_name = serializers.CharField(allow_null=True)
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    runs_used = serializers.IntegerField()
    runs_limit = serializers.IntegerField(allow_null=True, help_text="null: no limit.")
    overage_allowed = serializers.BooleanField(help_text="Runs past the limit are billed, not refused.")
    seats_used = serializers.IntegerField(help_text="Members plus pending invitations.")
    seats_limit = serializers.IntegerField(allow_null=True)
    log_bytes = serializers.IntegerField()
    log_retention_days = serializers.IntegerField()
    runs_by_day = DayCountOut(many=True)
    runs_by_flow = FlowCountOut(many=True)


_LISTS = ("runs_by_day", "runs_by_flow")


def usage_out(report: UsageReport) -> dict:
    return UsageOut({
        **{name: getattr(report, name) for name in UsageOut._declared_fields if name not in _LISTS},
        "runs_by_day": [{"day": day, "runs": n} for day, n in report.runs_by_day],
        "runs_by_flow": [{"flow_id": fid, "flow_name": name, "runs": n} for fid, name, n in report.runs_by_flow],
    }).data


class CheckoutIn(serializers.Serializer):
    plan = serializers.CharField(max_length=32, help_text="The plan to buy (standard).")
    seats = serializers.IntegerField(min_value=1, max_value=10_000)


class RedirectOut(serializers.Serializer):
    url = serializers.URLField(help_text="Stripe's page: send the browser there.")


class InvoiceOut(serializers.Serializer):
    id = serializers.CharField()
    number = serializers.CharField()
    status = serializers.CharField()
    amount_due = serializers.IntegerField(help_text="In the currency's smallest unit (cents).")
    amount_paid = serializers.IntegerField()
    currency = serializers.CharField()
    created = serializers.IntegerField(allow_null=True, help_text="Unix time.")
    hosted_invoice_url = serializers.CharField()


class SubscriptionOut(serializers.Serializer):
    plan = PlanOut()
    status = serializers.CharField(help_text="active, trialing, past_due, canceled or incomplete.")
    seats = serializers.IntegerField(help_text="Seats paid for.")
    current_period_start = serializers.DateTimeField(allow_null=True)
    current_period_end = serializers.DateTimeField(allow_null=True)
    grace_ends_at = serializers.DateTimeField(allow_null=True, help_text="Past due: paid limits end then.")
    has_stripe_customer = serializers.BooleanField()


class BillingOut(serializers.Serializer):
    billing_enabled = serializers.BooleanField()
    subscription = SubscriptionOut(allow_null=True, help_text="null: on Free, never subscribed.")
    can_manage = serializers.BooleanField(help_text="Whether you may upgrade and manage billing (Owners).")
    invoices = InvoiceOut(many=True)
    invoices_error = serializers.CharField(help_text="Why the invoices could not be read now; else empty.")
