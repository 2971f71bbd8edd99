from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Plans, quotas, usage and Stripe. Filled by the billing issue."""

    name = "billing"
