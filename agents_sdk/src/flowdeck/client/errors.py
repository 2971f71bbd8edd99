"""Exceptions the client raises, one per kind of answer a caller handles differently.

Every server error has the shape ``{"error": {"code", "message", "details"}}``; the exception keeps
those (``.code``, ``.message``, ``.details``) and the HTTP ``.status``, and its ``str()`` is a
sentence a person can act on.
"""

from __future__ import annotations

from typing import Any


class FlowdeckError(Exception):
    """Base of every client error."""

    status: int | None
    code: str
    message: str
    details: Any

    def __init__(self, message: str, *, status: int | None = None, code: str = "error", details: Any = None,
                 hint: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details if details is not None else {}
        text = message
        if hint:
            text = f"{text} {hint}"
        super().__init__(text)


class AuthenticationError(FlowdeckError):
    """401: the API key is missing, wrong, revoked or expired."""


class PaymentRequiredError(FlowdeckError):
    """402: the workspace's plan does not allow this (a limit is reached)."""


class PermissionDeniedError(FlowdeckError):
    """403: the key is valid but its role may not do this."""


class NotFoundError(FlowdeckError):
    """404: no such object in this workspace (or not visible to this key)."""


class ConflictError(FlowdeckError):
    """409: the object moved on (stale attempt, run no longer held, stale version, rejected state)."""


class InvalidRequestError(FlowdeckError):
    """400/413/422: the request itself is wrong; retrying it unchanged cannot help."""


class RateLimitedError(FlowdeckError):
    """429 after every retry: the server asks to slow down (``retry_after`` seconds)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerUnavailableError(FlowdeckError):
    """The server could not be reached or kept failing (network error or 5xx after every retry).
    Nothing was refused: the caller may keep the request and send it again later."""
