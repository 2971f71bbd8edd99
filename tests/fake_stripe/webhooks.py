"""Webhook signing and delivery, as Stripe does them.

The body is the event's JSON (pretty-printed, as Stripe sends it, so a receiver that verifies a
re-serialised body instead of the raw bytes fails here too) and the header is
`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with one v1 entry per
secret while secrets rotate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any


def event_body(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2)


def signature_header(body: str, secrets: list[str], timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.{body}".encode()
    parts = [f"t={t}"]
    parts += [f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets]
    return ",".join(parts)


def deliver(url: str, event: dict[str, Any], secrets: list[str], timeout: float = 30.0) -> dict[str, Any]:
    """POST one event; the result records what the receiver answered (or why it could not)."""
    body = event_body(event)
    header = signature_header(body, secrets)
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": header,
        },
    )
    result: dict[str, Any] = {"event_id": event["id"], "type": event["type"], "url": url,
                              "signature": header, "status": None, "response": "", "error": None,
                              "delivered_at": time.time()}
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - test-only http
            result["status"] = response.status
            result["response"] = response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        result["status"] = exc.code
        result["response"] = exc.read(2000).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        result["error"] = str(exc)
    return result
