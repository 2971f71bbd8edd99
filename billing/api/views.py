"""REST adapters for billing: plans on offer and a workspace's usage (JSON or CSV)."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.guard import WorkspaceAPIView
from accounts.authz import can
from accounts.links import public_url
from billing import selectors, stripe_gateway, webhooks
from billing.models import Plan
from billing.usage import usage_csv, usage_report
from core.errors import error_response
from core.serializers import validated

from . import serializers as s

logger = logging.getLogger(__name__)


class PlanListView(APIView):
    """The plans on offer, cheapest first (for the plan comparison)."""

    @extend_schema(responses=s.PlanOut(many=True), summary="List the plans")
    def get(self, request: Request) -> Response:
        return Response(s.PlanOut(Plan.objects.all(), many=True).data)


class UsageView(WorkspaceAPIView):
    scope_map = {"GET": "billing:read"}

    @extend_schema(responses=s.UsageOut, summary="This billing period's usage against the plan's limits")
    def get(self, request: Request, workspace_slug: str) -> Response:
        return Response(s.usage_out(usage_report(actor=self.principal)))


class BillingView(WorkspaceAPIView):
    """The workspace's plan and subscription, and its Stripe invoices."""

    scope_map = {"GET": "billing:read"}

    @extend_schema(responses=s.BillingOut, summary="The plan, the subscription and the invoices")
    def get(self, request: Request, workspace_slug: str) -> Response:
        subscription = selectors.subscription_of(self.workspace.pk)
        can_manage = can(self.principal, "billing:manage", self.workspace)
        return Response(s.BillingOut({
            "billing_enabled": selectors.billing_enabled(),
            "subscription": None if subscription is None else {
                "plan": subscription.plan, "status": subscription.status, "seats": subscription.seats,
                "current_period_start": subscription.current_period_start,
                "current_period_end": subscription.current_period_end,
                "grace_ends_at": subscription.grace_ends_at,
                "has_stripe_customer": bool(subscription.stripe_customer_id),
            },
            "can_manage": can_manage,
            **self._invoices(can_manage),
        }).data)

    def _invoices(self, can_manage: bool) -> dict[str, Any]:
        # Stripe being unreachable must not take the plan and usage away with it.
        try:
            return {"invoices": stripe_gateway.invoices(actor=self.principal) if can_manage else [],
                    "invoices_error": ""}
        except stripe_gateway.BillingUnavailable as exc:
            return {"invoices": [], "invoices_error": exc.message}


def _billing_page(request: Request, slug: str) -> str:
    return f"{public_url(request)}/w/{slug}/billing"


class CheckoutView(WorkspaceAPIView):
    scope_map = {"POST": "billing:manage"}

    @extend_schema(request=s.CheckoutIn, responses=s.RedirectOut,
                   summary="Start Stripe Checkout to buy a plan (Owners)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        data = validated(s.CheckoutIn, request.data)
        page = _billing_page(request, workspace_slug)
        url = stripe_gateway.checkout_url(
            actor=self.principal, plan_code=data["plan"], seats=data["seats"],
            success_url=page + "?checkout=done&session={CHECKOUT_SESSION_ID}", cancel_url=page + "?checkout=canceled")
        return Response({"url": url})


class PortalView(WorkspaceAPIView):
    scope_map = {"POST": "billing:manage"}

    @extend_schema(request=None, responses=s.RedirectOut,
                   summary="Open Stripe's customer portal: card, seats, plan, cancellation (Owners)")
    def post(self, request: Request, workspace_slug: str) -> Response:
        return Response({"url": stripe_gateway.portal_url(actor=self.principal,
                                                          return_url=_billing_page(request, workspace_slug))})


class UsageDownloadView(WorkspaceAPIView):
    scope_map = {"GET": "billing:read"}

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR}, summary="Download this period's usage as CSV")
    def get(self, request: Request, workspace_slug: str) -> HttpResponse:
        report = usage_report(actor=self.principal)
        response = HttpResponse(usage_csv(report), content_type="text/csv; charset=utf-8")
        name = f"flowdeck-usage-{self.workspace.slug}-{report.period_start:%Y-%m-%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Stripe's webhook endpoint (billing/webhooks.py). 400: not signed by Stripe, nothing written;
    503: applying it failed and was rolled back, so Stripe sends it again."""
    try:
        event = webhooks.verify(request.body, request.headers.get("Stripe-Signature", ""))
    except webhooks.BadSignature as exc:
        return error_response("invalid_signature", str(exc), 400)
    try:
        result = webhooks.handle(event)
    except Exception:
        logger.exception("Stripe event %s could not be applied; Stripe will send it again", event.get("id"))
        return error_response("webhook_failed", "The event could not be applied; it was rolled back.", 503)
    return JsonResponse({"received": True, "result": result})
