from django.urls import path

from . import views

ws = "workspaces/<slug:workspace_slug>/"

urlpatterns = [
    path("plans/", views.PlanListView.as_view(), name="plan-list"),
    path("billing/stripe-webhook/", views.stripe_webhook, name="stripe-webhook"),
    path(ws + "billing/", views.BillingView.as_view(), name="billing"),
    path(ws + "billing/checkout/", views.CheckoutView.as_view(), name="billing-checkout"),
    path(ws + "billing/portal/", views.PortalView.as_view(), name="billing-portal"),
    path(ws + "usage/", views.UsageView.as_view(), name="usage"),
    path(ws + "usage/download/", views.UsageDownloadView.as_view(), name="usage-download"),
]
