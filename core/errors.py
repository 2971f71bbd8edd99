"""One error shape for every API: ``{"error": {"code", "message", "details"}}``.

Services raise :class:`ServiceError` subclasses with a code a program can switch on and a message a
person can act on; the REST exception handler and the GraphQL mutations render them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response


class NotFound(Exception):
    """The object does not exist for this principal (missing and not-yours look the same).

    Raised by access checks (``accounts.authz``, the selectors); rendered as 404. It lives here,
    not in accounts, so that this module renders it without importing an app."""


class PermissionDenied(Exception):
    """The principal can see the object but its role does not allow the action (rendered as 403)."""

    def __init__(self, action: str, role: str | None):
        self.action = action
        self.role = role
        super().__init__(f"Your role ({role or 'none'}) does not allow '{action}' in this workspace.")


class ServiceError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class InvalidInput(ServiceError):
    status_code = 400
    code = "invalid"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class Gone(ServiceError):
    status_code = 410
    code = "gone"


class TooManyRequests(ServiceError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DatabaseUnavailable(ServiceError):
    """The database cannot be reached right now (down, restarting, or no pooled connection came
    free in time): 503 with ``Retry-After``; nothing was done, the same request may be sent again."""

    status_code = 503
    code = "database_unavailable"


# SQLSTATEs that mean "the server is not there for us" rather than "this query is wrong":
# class 08 (connection exceptions), shutdown/crash/start-up in progress, too many connections.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_database_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the database cannot be reached (G2), as opposed to a bug or a bad query:
    a connection refused or lost, a pool that had no connection to give in time, a server shutting
    down or starting up. Lock timeouts, deadlocks and cancelled statements are not outages."""
    from django.db import InterfaceError, OperationalError

    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    if isinstance(exc, InterfaceError):
        return True  # Django's own "connection already closed"
    cause = exc.__cause__
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the embedded SQLite build has no outage to report
        return False
    if not isinstance(cause, psycopg.Error):
        return False
    # Client-side failures (refused, timed out, closed, the pool's PoolTimeout) carry no SQLSTATE.
    sqlstate = cause.sqlstate
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES


def error_body(code: str, message: str, details: Any = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(code: str, message: str, status_code: int, details: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.ParseError: "malformed_request",
    drf_exceptions.Throttled: "rate_limited",
    drf_exceptions.NotAcceptable: "not_acceptable",
}


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key in ("non_field_errors", "detail") else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF exception handler that renders every error in the one shape."""
    headers: dict[str, str] = {}
    if isinstance(exc, ServiceError):
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=headers)
    if isinstance(exc, (NotFound, Http404)):
        return Response(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        return Response(
            error_body("permission_denied", str(exc), {"action": exc.action, "role": exc.role}),
            status=status.HTTP_403_FORBIDDEN,
        )
    if isinstance(exc, DjangoValidationError):
        return Response(error_body("invalid", " ".join(exc.messages)), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, drf_exceptions.ValidationError):
        return Response(
            error_body("invalid", _first_message(exc.detail), exc.detail), status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, drf_exceptions.APIException):
        code = getattr(exc, "auth_code", None) or _DRF_CODES.get(type(exc), exc.default_code)
        if isinstance(exc, drf_exceptions.Throttled) and exc.wait:
            headers["Retry-After"] = str(int(exc.wait))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        return Response(error_body(code, _first_message(exc.detail)), status=exc.status_code, headers=headers)
    return None


class Forbidden(ServiceError):
    status_code = 403
    code = "permission_denied"


class Unauthenticated(ServiceError):
    status_code = 401
    code = "authentication_failed"
