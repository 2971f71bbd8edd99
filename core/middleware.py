"""Request-level guards: the body-size limit that must run before any view reads the body, and
the 503 answer while the database cannot be reached; and static files, served synchronously."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty

from .errors import error_response, is_database_unavailable

logger = logging.getLogger(__name__)


class _StaticFileResponse(FileResponse):
    # ServeStatic computed every header; larger blocks than FileResponse's 4 KiB mean fewer
    # hand-overs from the request thread to the event loop.
    block_size = 64 * 1024

    def set_headers(self, filelike: Any) -> None:
        pass


class StaticFilesMiddleware:
    """ServeStatic's files (the web app's build, Swagger UI …), answered without an event loop.

    ``servestatic.middleware.ServeStaticMiddleware`` is async-only: in a synchronous handler
    (config/asgi.py serves HTTP through Django's WSGI handler) Django would wrap it in
    ``async_to_sync``, which starts a thread and an event loop for every request, static or not.
    This keeps its table of files and its settings (``SERVESTATIC_*``) and serves a file the way
    its WSGI application does."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        from servestatic.middleware import ServeStaticMiddleware

        async def never_called(request: HttpRequest) -> HttpResponseBase:
            raise AssertionError("only its table of files is used")

        self.get_response = get_response
        self.files = ServeStaticMiddleware(never_called)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        files = self.files
        static_file = files.find_file(request.path_info) if files.autorefresh else files.files.get(request.path_info)
        if static_file is None:
            return self.get_response(request)
        served = static_file.get_response(request.method or "GET", request.META)
        response = _StaticFileResponse(served.file or (), status=int(served.status))
        del response["Content-Type"]
        for key, value in served.headers:
            if value is not None:
                response[key] = value
        return response


class BodySizeLimitMiddleware:
    """Answer 413 for a body over the limit before anything reads it (A1)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response("malformed_request", "Content-Length is not a number.", 400)
        if length > limit:
            return error_response(
                "request_too_large",
                f"The request body is {length} bytes; the limit is {limit} bytes.",
                413,
                {"limit_bytes": limit},
            )
        return self.get_response(request)


# A JSON string (escapes included) or one bracket: what nesting depth is counted over.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` deep (brackets inside strings
    do not count). A body with no more than ``limit`` opening brackets in all is answered without a
    scan, so ordinary requests pay two ``bytes.count`` calls."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for token in _JSON_TOKENS.finditer(body):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


class JsonDepthLimitMiddleware:
    """Answer 400 for a JSON body nested deeper than ``MAX_JSON_DEPTH`` before any parser reads it.
    Python's JSON parser raises RecursionError about a thousand levels down, which DRF's parser and
    allauth's alike turned into a 500, with or without credentials. GraphQL is left to its view,
    which answers the same in GraphQL's own error shape."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (request.method in ("POST", "PUT", "PATCH", "DELETE") and "json" in (request.content_type or "")
                and not request.path_info.startswith("/graphql")):
            limit = settings.MAX_JSON_DEPTH
            if json_nesting_exceeds(request.body, limit):
                return error_response(
                    "json_too_deep",
                    f"The JSON body nests arrays and objects more than {limit} levels deep; send it flatter.",
                    400,
                    {"max_depth": limit},
                )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A view that cannot reach the database answers 503 with ``Retry-After`` (G2), not 500: REST,
    GraphQL and allauth clients get the one error shape, people a plain page. The connection
    settings bound how long that takes (``DATABASE_CONNECT_TIMEOUT``, ``DATABASE_POOL_TIMEOUT``).

    Views open their transaction, and with it the connection, as they start (``ATOMIC_REQUESTS``),
    so an outage surfaces here as the view's exception; one raised by another middleware reaches
    ``core.views.server_error``, which answers the same."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_unavailable(exception):
            return None
        from .views import database_unavailable

        logger.warning("Database unavailable: %s %s answered 503 (%s: %s)", request.method, request.path,
                       type(exception).__name__, str(exception).strip()[:300])
        return database_unavailable(request)


class LazyMessageMiddleware(MessageMiddleware):
    """Django's ``MessageMiddleware``, building the message storage only when something uses it (the
    admin). API requests never do, and building it (a cookie signer) was ≈ 3 % of an API request's
    CPU (docs/performance.md)."""

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response  # never used: nothing to store
        return super().process_response(request, response)
