"""The Flowdeck REST client (``from flowdeck.client import Client``).

``Client`` is imported when first used: it loads httpx, which ``import flowdeck`` (and
``flowdeck.config``, whose errors are these) should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowdeck.client.errors import (
    AuthenticationError,
    ConflictError,
    FlowdeckError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnavailableError,
)

if TYPE_CHECKING:
    from flowdeck.client.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from flowdeck.client.client import Client

        globals()["Client"] = Client
        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AuthenticationError",
    "Client",
    "ConflictError",
    "FlowdeckError",
    "InvalidRequestError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerUnavailableError",
]
