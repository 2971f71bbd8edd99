"""REST authentication: API keys in the Authorization header, or the browser session with CSRF."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accounts.services.api_keys import api_key_authenticate
from core import ratelimit
from core.errors import ServiceError, TooManyRequests
from core.views import CSRF_FAILED_MESSAGE


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer fd_…``. A key-authenticated request ignores cookies entirely (B7)."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != self.keyword or not secret.strip():
            raise _failed("Send the API key as 'Authorization: Bearer fd_…'.", "authentication_malformed")
        ip = ratelimit.client_ip(request)
        try:
            principal = api_key_authenticate(secret.strip(), ip_address=ip)
        except ServiceError as exc:
            allowed, retry_after = ratelimit.hit(
                "api-key-failures", ip or "unknown", limit=settings.API_KEY_FAILURE_LIMIT_PER_IP, window_seconds=60
            )
            if not allowed:
                raise TooManyRequests(
                    "Too many failed API key attempts from this address; wait and retry.", retry_after=retry_after
                ) from None
            raise _failed(exc.message, exc.code) from None
        return (principal.user or _ServiceAccountUser(principal), principal)

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
