"""Operator views of billing (core.admin_site: superusers only). Plans and an Enterprise
workspace's custom limits are set here; what Stripe owns (status, seats paid, periods) is shown,
not edited, since the next webhook would overwrite it."""

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin

from .models import Plan, QuotaNotice, RunMeter, StripeEvent, Subscription
from .quotas import apply_limits_to_meter


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "seats", "runs_per_period", "metered_overage", "log_retention_days", "self_serve"]
    ordering = ["position"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["workspace", "plan", "status", "seats", "current_period_end"]
    list_filter = ["plan", "status"]
    search_fields = ["workspace__slug", "stripe_customer_id", "stripe_subscription_id"]
    raw_id_fields = ["workspace"]
    readonly_fields = ["status", "seats", "current_period_start", "current_period_end", "grace_ends_at",
                       "stripe_customer_id", "stripe_subscription_id", "stripe_synced_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        apply_limits_to_meter(obj.workspace_id)  # new custom limits apply to this period at once


@admin.register(RunMeter)
class RunMeterAdmin(ReadOnlyAdmin):
    list_display = ["workspace", "period_start", "period_end", "runs", "runs_limit", "overage_reported"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "created", "received_at"]
    search_fields = ["id", "type"]


@admin.register(QuotaNotice)
class QuotaNoticeAdmin(ReadOnlyAdmin):
    list_display = ["workspace", "limit", "threshold", "period_start", "sent_at"]
