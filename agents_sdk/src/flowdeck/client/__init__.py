"""The Flowdeck REST client (``from flowdeck.client import Client``)."""

from __future__ import annotations

from flowdeck.client.client import Client
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
