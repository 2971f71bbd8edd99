"""config/wsgi_bridge.py: the HTTP side of a server process, in process, against small WSGI
applications (the real server's path is in test_http_path.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from config.wsgi_bridge import ThreadedWSGI, build_environ


def _scope(method: str = "POST", path: str = "/echo/", headers: list[tuple[bytes, bytes]] | None = None,
           query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "https",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
            "headers": headers or [(b"host", b"example.com")], "client": ("10.0.0.7", 51000),
            "server": ("example.com", 443)}


def _serve(app: Any, scope: dict[str, Any], body_parts: list[bytes], disconnect: bool = False,
           workers: int = 2) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run one request through ThreadedWSGI; return what was sent and the messages received."""
    bridge = ThreadedWSGI(app, workers=workers)
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []
    parts = list(body_parts)

    async def receive() -> dict[str, Any]:
        if disconnect and not parts:
            message: dict[str, Any] = {"type": "http.disconnect"}
        else:
            chunk = parts.pop(0) if parts else b""
            message = {"type": "http.request", "body": chunk, "more_body": bool(parts) or disconnect}
        received.append(message)
        return message

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        asyncio.run(bridge(scope, receive, send))
    finally:
        bridge.executor.shutdown(wait=True)
    return sent, received


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Thread", threading.current_thread().name)])
    return [b"got:", body]


def test_a_body_in_several_parts_reaches_the_application_whole_and_the_reply_goes_out_in_two_messages():
    scope = _scope(headers=[(b"host", b"example.com"), (b"content-length", b"11")])
    sent, _ = _serve(echo, scope, [b"hello", b" ", b"world"])
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 201
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"text/plain"
    # The application ran on one of the pool's named threads, not on the event loop's.
    assert headers[b"x-thread"].startswith(b"WSGI_")
    assert sent[1]["body"] == b"got:hello world"
    assert not sent[1].get("more_body")


def test_a_client_gone_before_its_body_arrived_never_reaches_the_application():
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b""]

    sent, received = _serve(app, _scope(), [b"partial"], disconnect=True)
    assert received[-1]["type"] == "http.disconnect"
    assert calls == [] and sent == []


def test_the_environ_carries_what_django_reads():
    scope = _scope(method="GET", path="/api/v1/caf\u00e9/", query=b"a=1&b=2", headers=[
        (b"host", b"example.com"), (b"content-type", b"application/json"), (b"content-length", b"2"),
        (b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2"), (b"idempotency-key", b"k-1"),
    ])
    environ = build_environ(scope, b"{}")
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/api/v1/caf\u00e9/".encode().decode("latin1")  # PEP 3333 bytes-as-text
    assert environ["QUERY_STRING"] == "a=1&b=2"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "2")
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2"  # repeated headers joined
    assert environ["HTTP_IDEMPOTENCY_KEY"] == "k-1"
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("10.0.0.7", "51000")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"], environ["wsgi.url_scheme"]) == ("example.com", "443",
                                                                                             "https")
    assert environ["wsgi.input"].read() == b"{}"


class _Streaming:
    """A streaming body as Django's StreamingHttpResponse presents it to a WSGI server."""

    streaming = True

    def __init__(self, produced: list[int]) -> None:
        self.produced = produced
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for i in range(5):
            self.produced.append(i)
            yield f"chunk{i};".encode()

    def close(self) -> None:
        self.closed = True


def test_a_streaming_response_is_sent_as_produced_and_closed():
    produced: list[int] = []
    body = _Streaming(produced)
    progress: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> _Streaming:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    bridge = ThreadedWSGI(app, workers=1)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        # How many chunks the thread had produced when each message reached the server: the
        # thread waits for each chunk to be taken before it produces the next.
        progress.append(len(produced))
        sent.append(message)

    asyncio.run(bridge(_scope(method="GET"), receive, send))
    bridge.executor.shutdown(wait=True)
    assert sent[0]["type"] == "http.response.start"
    bodies = [m for m in sent[1:] if m["type"] == "http.response.body"]
    assert [m["body"] for m in bodies] == [f"chunk{i};".encode() for i in range(5)] + [b""]
    assert progress == [0, 1, 2, 3, 4, 5, 5]
    assert body.closed


def test_an_application_error_reaches_the_server():
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _serve(app, _scope(), [b""])


def test_requests_beyond_the_pool_wait_their_turn_on_its_threads():
    names: list[str] = []
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:
            names.append(threading.current_thread().name)
        start_response("200 OK", [])
        return [b"ok"]

    bridge = ThreadedWSGI(app, workers=2)

    async def one() -> bytes:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await bridge(_scope(method="GET"), receive, send)
        return sent[1]["body"]

    async def many() -> list[bytes]:
        return await asyncio.gather(*(one() for _ in range(20)))

    assert asyncio.run(many()) == [b"ok"] * 20
    bridge.executor.shutdown(wait=True)
    assert len(names) == 20 and set(names) <= {"WSGI_0", "WSGI_1"}
