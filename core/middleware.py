"""Request-level guards that must run before any view reads the body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .errors import error_response


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
