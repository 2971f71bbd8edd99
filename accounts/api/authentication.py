"""REST authentication: API keys in the Authorization header, or the browser session with CSRF."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.authz import Principal
from accounts.services.api_keys import api_key_authenticate
from core import ratelimit
from core.errors import ServiceError, TooManyRequests
from core.views import CSRF_FAILED_MESSAGE


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer fd_…``. A key-authenticated request ignores cookies entirely (B7)."""

    keyword = "bearer"

    def authenticate(self, request):
        # The header itself, not DRF's get_authorization_header: that builds request.headers, a
        # dict of every header, for this one.
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != self.keyword or not secret.strip():
            raise _failed("Send the API key as 'Authorization: Bearer fd_…'.", "authentication_malformed")
        ip = ratelimit.client_ip(request)
        # The workspace guard confirms a cached key in the statement that scopes the request
        # (accounts/api/guard.py); any other view gets it confirmed here.
        defer = getattr((request.parser_context or {}).get("view"), "confirms_cached_keys", False)
        try:
            principal = api_key_authenticate(secret.strip(), ip_address=ip, defer_confirmation=defer)
        except ServiceError as exc:
            raise refused(request, exc) from None
        return user_of(principal), principal

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="flowdeck"'


class _ServiceAccountUser:
    """Stands in for request.user when a service account calls (it is no Django user)."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, principal):
        self.service_account = principal.service_account

    def __str__(self) -> str:
        return f"service account {self.service_account.name}"


def user_of(principal: Principal) -> Any:
    """What ``request.user`` is for a key's principal."""
    return principal.user or _ServiceAccountUser(principal)


def refused(request, exc: ServiceError) -> Exception:
    """A key that failed to authenticate: 401 with its code, or 429 once this address has failed
    too often."""
    ip = ratelimit.client_ip(request)
    allowed, retry_after = ratelimit.hit(
        "api-key-failures", ip or "unknown", limit=settings.API_KEY_FAILURE_LIMIT_PER_IP, window_seconds=60
    )
    if not allowed:
        return TooManyRequests("Too many failed API key attempts from this address; wait and retry.",
                               retry_after=retry_after)
    return _failed(exc.message, exc.code)


def _failed(message: str, code: str) -> exceptions.AuthenticationFailed:
    exc = exceptions.AuthenticationFailed(message)
    exc.auth_code = code
    return exc


class CsrfSessionAuthentication(authentication.SessionAuthentication):
    """The browser's session; unsafe methods need the CSRF token (DRF enforces it here)."""

    def enforce_csrf(self, request):
        # DRF's own refusal reads "CSRF Failed: …" with the generic `permission_denied`; answer with
        # `csrf_failed` and the same words as Django's CSRF failure view (core.views.csrf_failure).
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied:
            refused = exceptions.PermissionDenied(CSRF_FAILED_MESSAGE)
            refused.auth_code = "csrf_failed"
            raise refused from None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """The API key in the OpenAPI schema: an HTTP Bearer token (Swagger UI's "Authorize" sends it)."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "fd_…",
            "description": "An API key (personal or a service account's): `Authorization: Bearer fd_…`. "
                           "A request with a key ignores cookies.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    """The browser session in the OpenAPI schema: its cookie (writes also need the CSRF token)."""

    target_class = CsrfSessionAuthentication
    name = "Session"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "The web app's signed-in session. POST, PUT, PATCH and DELETE also need the "
                           f"`{settings.CSRF_COOKIE_NAME}` cookie's value in the `X-CSRFToken` header.",
        }
