"""The test side of the fake: control calls over HTTP (`FakeStripeClient`) and a fake run in a
process of its own (`FakeStripeProcess`), for tests whose server under test runs elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeStripeControlError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"fake Stripe control call failed ({status}): {body}")
        self.status = status
        self.body = body


class FakeStripeClient:
    """Every control call of the fake. `base_url` is what `stripe.api_base` (or a StripeClient's
    `base_addresses={"api": ...}`) is set to."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              query: dict[str, str | None] | None = None) -> Any:
        url = f"{self.base_url}/_fake/{path}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - local fake
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")
            raise FakeStripeControlError(exc.code, detail) from None

    # -- set-up ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def reset(self) -> None:
        """Forget every object, request, event and failure rule (the webhook settings stay)."""
        self._call("POST", "reset")

    def configure(self, *, webhook_url: str | None = None, webhook_secrets: list[str] | None = None,
                  api_events: str | None = None) -> dict[str, Any]:
        """Where webhooks go, the secrets they are signed with (several while rotating), and
        whether events caused by API calls are queued ("queue") or sent at once ("async")."""
        body: dict[str, Any] = {}
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if webhook_secrets is not None:
            body["webhook_secrets"] = webhook_secrets
        if api_events is not None:
            body["api_events"] = api_events
        return self._call("POST", "config", body)

    def seed_price(self, **spec: Any) -> dict[str, Any]:
        """A recurring price: id, lookup_key, unit_amount (cents), currency, interval,
        interval_count, usage_type ("licensed" | "metered"), meter_event_name (which meter events
        a metered price bills at renewal), nickname, product, metadata, active."""
        return self._call("POST", "prices", spec)

    def fail_next(self, method: str, path: str, count: int = 1, status: int = 500, when: str = "before",
                  message: str | None = None) -> None:
        """The next `count` API calls matching method and path (fnmatch pattern, e.g.
        "/v1/subscriptions/*") answer `status`. when="before": the call does nothing;
        when="after": it runs (and its result is kept for its idempotency key) but the caller
        sees the failure, like an answer lost on the way."""
        self._call("POST", "failures", {"method": method, "path": path, "count": count, "status": status,
                                        "when": when, "message": message})

    # -- inspection --------------------------------------------------------------------------

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """API requests received, oldest first: method, path, params (parsed), idempotency_key,
        headers (a subset), status, replayed, injected_failure."""
        return self._call("GET", "requests", query={"method": method, "path": path})

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """customers, prices, checkout_sessions, portal_sessions, subscriptions, invoices,
        meter_events, events or deliveries, oldest first."""
        return self._call("GET", f"objects/{quote(kind)}")

    def meter_events(self) -> list[dict[str, Any]]:
        return self.objects("meter_events")

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "events", query={"type": event_type})

    def deliveries(self) -> list[dict[str, Any]]:
        return self.objects("deliveries")

    # -- what happens at Stripe --------------------------------------------------------------

    def complete_checkout(self, session_id: str, email: str | None = None) -> dict[str, Any]:
        """The customer pays: returns session, subscription, invoice, events, deliveries."""
        return self._call("POST", f"checkout/{quote(session_id)}/complete", {"email": email})

    def expire_checkout(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"checkout/{quote(session_id)}/expire")

    def advance_period(self, subscription_id: str) -> dict[str, Any]:
        return self._call("POST", f"subscriptions/{quote(subscription_id)}/advance")

    def fail_payment(self, subscription_id: str) -> dict[str, Any]:
        return self._call("POST", f"subscriptions/{quote(subscription_id)}/fail_payment")

    def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._call("POST", f"invoices/{quote(invoice_id)}/pay")

    def portal_update(self, subscription_id: str, *, quantity: int | None = None, price: str | None = None,
                      cancel_at_period_end: bool | None = None) -> dict[str, Any]:
        """What the customer does in the portal: seats, price, cancel at period end / renew."""
        body: dict[str, Any] = {"quantity": quantity, "price": price}
        if cancel_at_period_end is not None:
            body["cancel_at_period_end"] = cancel_at_period_end
        return self._call("POST", f"subscriptions/{quote(subscription_id)}/update", body)

    def portal_cancel(self, subscription_id: str, *, at_period_end: bool = False) -> dict[str, Any]:
        return self._call("POST", f"subscriptions/{quote(subscription_id)}/cancel", {"at_period_end": at_period_end})

    # -- events ------------------------------------------------------------------------------

    def send_event(self, event_type: str, obj: dict[str, Any],
                   previous_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new event of any type with the given data.object; returns event and deliveries."""
        return self._call("POST", "events", {"type": event_type, "object": obj,
                                             "previous_attributes": previous_attributes})

    def replay_event(self, event_id: str) -> dict[str, Any]:
        """Send an already-sent event again: same id, same payload, a fresh signature."""
        return self._call("POST", f"events/{quote(event_id)}/replay")

    def signed_event(self, event_id: str) -> dict[str, str]:
        """{"body", "signature"}: the exact bytes and Stripe-Signature a delivery would carry, for
        posting an event to a view in-process (a test client) instead of over HTTP."""
        return self._call("GET", f"events/{quote(event_id)}/signed")

    def hold_events(self, on: bool = True) -> None:
        """While on, every event waits in the pending queue instead of being delivered."""
        self._call("POST", "hold", {"on": on})

    def pending_events(self) -> list[dict[str, Any]]:
        return self._call("GET", "pending")

    def release_events(self, order: list[str] | None = None) -> list[dict[str, Any]]:
        """Deliver pending events: the given ids in that order (others keep waiting), or all of
        them oldest first. Returns the deliveries."""
        return self._call("POST", "release", {"order": order})["deliveries"]


class FakeStripeProcess(FakeStripeClient):
    """`python -m tests.fake_stripe` in a child process (state lives there); control over HTTP."""

    def __init__(self, *, webhook_url: str | None = None, webhook_secret: str | list[str] | None = None,
                 api_events: str = "queue", port: int = 0) -> None:
        super().__init__("")
        secrets = [webhook_secret] if isinstance(webhook_secret, str) else list(webhook_secret or [])
        self.command = [sys.executable, "-m", "tests.fake_stripe", "--port", str(port), "--api-events", api_events]
        if webhook_url:
            self.command += ["--webhook-url", webhook_url]
        for secret in secrets:
            self.command += ["--webhook-secret", secret]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> FakeStripeProcess:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.process = subprocess.Popen(self.command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("FAKE_STRIPE_READY "):
            self.stop()
            raise RuntimeError(f"fake Stripe did not start: {line!r}")
        self.base_url = line.split(" ", 1)[1].strip()
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> FakeStripeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
