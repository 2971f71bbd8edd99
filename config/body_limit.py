"""The request-body limit at the edge of the server process, before any body is read (A1).

``core.middleware.BodySizeLimitMiddleware`` runs inside Django, which under the WSGI bridge of
:mod:`config.asgi` sees only a declared ``Content-Length`` and reads a chunked body as empty; and
it runs on a request thread, so a client announcing 50 MB held one of the few threads while it
was answered. :class:`BodySizeLimit` wraps the HTTP application on the event loop instead:

- a declared ``Content-Length`` over the limit is answered 413 at once: the application is not
  called and no byte of the body is read;
- a body without ``Content-Length`` (``Transfer-Encoding: chunked``) is read here, and answered 413
  the moment it passes the limit; within the limit it reaches the application in one piece, with
  the ``Content-Length`` it turned out to have, so Django reads it like any other body.

A chunked body cut at the limit, and a declared one more than :data:`READ_PAST_BYTES` over it,
close the connection with the 413: the rest is never read. Requests that declare their length within the
limit pass through untouched (no copy, no extra message), which is every request of the SDK, the
agents and the web app.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# A refused body declared at most this much over the limit is read past and thrown away by uvicorn
# (never kept), so that the connection stays open: a proxy in front, which has the whole body and
# is still sending it (infra/nginx/flowdeck.conf passes up to 6 MiB), then reads the 413 instead of
# a reset that it would answer as 502. Anything longer closes the connection at once.
READ_PAST_BYTES = 16 * 1024 * 1024


class _Cut(enum.Enum):
    TOO_LARGE = "too large"
    DISCONNECTED = "disconnected"


def _too_large_body(limit: int, length: int | None) -> bytes:
    # The project's one error shape (core/errors.py), rendered without Django: nothing of the
    # request has reached Django, and nothing should have to for a refusal.
    if length is None:
        message = f"The request body is over the limit of {limit} bytes."
    else:
        message = f"The request body is {length} bytes; the limit is {limit} bytes."
    error = {"code": "request_too_large", "message": message, "details": {"limit_bytes": limit}}
    return json.dumps({"error": error}).encode()


class BodySizeLimit:
    """ASGI middleware for HTTP: refuse bodies over ``limit`` bytes before the application reads
    them (module docstring)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_length = transfer_encoding = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                transfer_encoding = value
        if content_length is not None:
            # uvicorn's parser has refused a malformed Content-Length already; an odd one that
            # got through is left to core.middleware, which answers 400.
            if content_length.isdigit() and int(content_length) > self.limit:
                length = int(content_length)
                await self._refuse(send, length, close=length > self.limit + READ_PAST_BYTES)
                return
        elif transfer_encoding is not None:
            body = await self._read_within_limit(receive)
            if body is _Cut.TOO_LARGE:
                await self._refuse(send, None, close=True)
                return
            if isinstance(body, bytes):
                scope, receive = self._with_whole_body(scope, receive, body)
        await self.app(scope, receive, send)

    async def _read_within_limit(self, receive: Receive) -> bytes | _Cut:
        """The whole streamed body, or TOO_LARGE as soon as it passes the limit; DISCONNECTED when
        the client went away first (the application then sees the disconnect as it would)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _Cut.DISCONNECTED
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return _Cut.TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _with_whole_body(scope: Scope, receive: Receive, body: bytes) -> tuple[Scope, Receive]:
        # Django reads exactly CONTENT_LENGTH bytes (none without it): give the body its length and
        # drop the chunked framing, which is uvicorn's business and already undone.
        headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        return {**scope, "headers": headers}, replay

    async def _refuse(self, send: Send, length: int | None, *, close: bool) -> None:
        body = _too_large_body(self.limit, length)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        if close:
            # uvicorn closes the connection once this response is out, rather than read (and
            # throw away) the rest of the body to keep the connection alive.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
