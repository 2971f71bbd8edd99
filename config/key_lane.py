"""Django's WSGI handler, with a shorter middleware chain for API requests that carry a key.

A request to ``/api/`` with ``Authorization: Bearer …`` and no cookie comes from an agent, the SDK
or a script: it has no session, and a key-authenticated request ignores cookies anyway (B7). The
middleware that only serves sessions and browsers (sessions, CSRF, the session user, messages,
allauth's account and user-session tracking) has nothing to do for it, yet costs about 0.2 ms of CPU
per request (docs/performance.md, "Sixth round"). Such requests go through a handler built from
``settings.MIDDLEWARE`` without those (:data:`SESSION_ONLY`); every other request (any request with
a cookie, any other path) goes through the whole chain. Both chains run the remaining classes in
the same order, so the security headers, the body and text guards, the 503 while the database is
unreachable and the rest apply to both alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

#: Middleware with nothing to do for a request that has no cookie and authenticates with a key.
SESSION_ONLY = frozenset({
    "core.middleware.StaticFilesMiddleware",  # files live under /static/, never /api/
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",  # the API's views are CSRF-exempt; sessions are checked by DRF
    "django.contrib.auth.middleware.AuthenticationMiddleware",  # DRF sets request.user from the key
    "core.middleware.LazyMessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
})


def is_key_request(environ: dict[str, Any]) -> bool:
    return (
        environ.get("PATH_INFO", "").startswith("/api/")
        and "HTTP_COOKIE" not in environ
        and environ.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "
    )


class _ChainHandler(WSGIHandler):
    """Django's WSGI handler with its own list of middleware instead of ``settings.MIDDLEWARE``."""

    def __init__(self, middleware: list[str]) -> None:
        self.middleware = middleware
        super().__init__()  # loads the middleware

    def load_middleware(self, is_async: bool = False) -> None:
        # Django reads the list from settings; it is swapped for the load only (start-up, one thread).
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = self.middleware
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = configured


class FlowdeckWSGIHandler:
    """The WSGI application: the key lane for :func:`is_key_request`, the whole chain otherwise."""

    def __init__(self) -> None:
        django.setup(set_prefix=False)
        self.full = WSGIHandler()
        self.key_lane = _ChainHandler([name for name in settings.MIDDLEWARE if name not in SESSION_ONLY])

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handler = self.key_lane if is_key_request(environ) else self.full
        return handler(environ, start_response)
