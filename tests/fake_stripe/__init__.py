"""A fake Stripe for the billing tests: the real `stripe` library talks to it over HTTP, and it
signs and delivers webhooks as Stripe does. See README.md in this directory."""

from tests.fake_stripe.client import FakeStripeClient, FakeStripeControlError, FakeStripeProcess
from tests.fake_stripe.server import FakeStripe

__all__ = ["FakeStripe", "FakeStripeClient", "FakeStripeControlError", "FakeStripeProcess"]
