"""The body-size limit at the edge of a server process (config/body_limit.py, A1): a declared
length over the limit is refused at once without reading the body, a chunked body is cut the moment
it passes the limit and the connection closed, and a chunked body within the limit reaches Django
whole. Against a real server process (conftest.py), with raw sockets where the timing matters;
then the middleware's own contract in process."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings

from accounts.models import Role
from config.body_limit import READ_PAST_BYTES, BodySizeLimit
from tests.conftest import WorkspaceWorld, build_world
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory

from .conftest import ThreadLoggingServer

MiB = 1024 * 1024
# pytest-django runs transactional tests as one group: the tests that need no data are marked so
# too, so that the module's server starts once, not once per group.
same_server_group = pytest.mark.django_db(transaction=True)


@pytest.fixture
def acme(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


def _connect(server: ThreadLoggingServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    # A small send buffer: what the client has handed to the kernel is close to what it has sent.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    return sock


def _head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response with a Content-Length body, read within ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of the response"
        body += chunk
    return int(status_line.split()[1]), headers, body


def _closed_by_server(sock: socket.socket, timeout: float = 5) -> bool:
    """Whether the server closed the connection (end of stream or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@same_server_group
def test_a_declared_length_over_the_limit_is_refused_at_once_without_the_body(server: ThreadLoggingServer):
    with _connect(server) as sock:
        started = time.monotonic()
        # Not a byte of the 50 MB is ever sent: the answer cannot depend on reading it.
        sock.sendall(_head("/api/v1/workspaces/acme/flow-runs/", "Content-Length: 50000000"))
        status, headers, body = _read_response(sock, timeout=5)
        elapsed = time.monotonic() - started
        assert status == 413
        assert elapsed < 1.0, f"answered after {elapsed:.2f}s"
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        error = json.loads(body)["error"]
        assert error["code"] == "request_too_large"
        assert error["details"] == {"limit_bytes": settings.MAX_REQUEST_BODY_BYTES}
        assert "50000000" in error["message"]
        assert _closed_by_server(sock)


@same_server_group
def test_a_chunked_body_is_cut_as_soon_as_it_passes_the_limit(server: ThreadLoggingServer):
    """An unauthenticated chunked upload of 100 MiB: the 413 arrives while the client still has
    most of it to send, and the server stops reading there (it closes the connection), so it never
    takes in, spools or buffers the rest."""
    total = 100 * MiB
    piece = _chunk(b"x" * (64 * 1024))
    sent = 0
    with _connect(server) as sock:
        sock.sendall(_head("/api/v1/workspaces/acme/flow-runs/", "Transfer-Encoding: chunked"))
        # Send until the answer is there to read, or the server has closed the connection.
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 64 * 1024
        # Past the limit by at most what the kernel's socket buffers held in flight.
        assert settings.MAX_REQUEST_BODY_BYTES < sent < total / 4, f"stopped after {sent} bytes"
        # The 413 was sent before the connection closed, so it is there to read either way.
        status, headers, body = _read_response(sock, timeout=5)
        assert status == 413
        assert json.loads(body)["error"]["code"] == "request_too_large"
        assert headers["connection"] == "close"
        # The server stopped reading: going on sending fails long before the 100 MiB are out
        # (a server that read and threw the rest away, keeping the connection, would take it all).
        sent_after = 0
        try:
            while sent_after < total - sent:
                sock.sendall(piece)
                sent_after += 64 * 1024
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent_after < total / 4, f"the server took {sent_after} more bytes after its 413"


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_a_chunked_json_body_within_the_limit_reaches_the_view(server: ThreadLoggingServer, acme: WorkspaceWorld):
    version = FlowVersionFactory(flow__project=ProjectFactory(workspace=acme.workspace), flow__workspace=acme.workspace)
    payload = json.dumps({"flow": str(version.flow_id), "parameters": {}}).encode()
    with httpx.Client(base_url=f"{server.url}/api/v1/workspaces/{acme.workspace.slug}/",
                      headers={"Authorization": f"Bearer {acme.keys[Role.DEVELOPER]}"}, timeout=15) as api:
        # A generator has no length: httpx sends it with Transfer-Encoding: chunked.
        request = api.build_request("POST", "flow-runs/", content=_chunks(payload, 7),
                                    headers={"Content-Type": "application/json"})
        assert request.headers["transfer-encoding"] == "chunked" and "content-length" not in request.headers
        response = api.send(request)
        assert response.status_code == 201, response.text
        assert response.json()["flow"] == str(version.flow_id)
        # The connection is still good for the next request.
        assert api.get(f"flow-runs/{response.json()['id']}/").status_code == 200


# --- the middleware's contract, in process --------------------------------------------------------


class _Downstream:
    """The application behind the limit: records what reached it."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _run(app: BodySizeLimit, headers: list[tuple[bytes, bytes]], messages: list[dict[str, Any]]) -> tuple[
        list[dict[str, Any]], int]:
    """Run one request; return what was sent and how many request messages were read."""
    sent: list[dict[str, Any]] = []
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent, len(messages) - len(pending)


def _body(data: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


def test_a_declared_length_over_the_limit_never_reaches_the_application_nor_reads_the_body():
    downstream = _Downstream()
    sent, read = _run(BodySizeLimit(downstream, limit=10), [(b"content-length", b"11")], [_body(b"x" * 11, False)])
    assert downstream.calls == [] and read == 0
    assert sent[0]["status"] == 413
    # Short enough for uvicorn to read past: the connection (a proxy's, say) stays open.
    assert (b"connection", b"close") not in sent[0]["headers"]


def test_a_declared_length_too_long_to_read_past_closes_the_connection():
    length = str(10 + READ_PAST_BYTES + 1).encode()
    sent, read = _run(BodySizeLimit(_Downstream(), limit=10), [(b"content-length", length)], [])
    assert sent[0]["status"] == 413 and read == 0
    assert (b"connection", b"close") in sent[0]["headers"]


def test_a_declared_length_at_the_limit_passes_through_untouched():
    downstream = _Downstream()
    headers = [(b"content-length", b"10")]
    sent, _ = _run(BodySizeLimit(downstream, limit=10), headers, [_body(b"x" * 10, False)])
    assert sent[0]["status"] == 200
    assert downstream.calls[0][0]["headers"] is headers and downstream.calls[0][1] == b"x" * 10


def test_a_chunked_body_at_the_limit_reaches_the_application_with_its_length():
    downstream = _Downstream()
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    sent, _ = _run(BodySizeLimit(downstream, limit=10), headers, [_body(b"x" * 4, True), _body(b"y" * 6, False)])
    assert sent[0]["status"] == 200
    scope, body = downstream.calls[0]
    assert body == b"xxxxyyyyyy"
    assert scope["headers"] == [(b"content-type", b"application/json"), (b"content-length", b"10")]


def test_a_chunked_body_one_byte_over_the_limit_is_cut_without_reading_further():
    downstream = _Downstream()
    messages = [_body(b"x" * 6, True), _body(b"y" * 5, True), _body(b"z", False)]
    sent, read = _run(BodySizeLimit(downstream, limit=10), [(b"transfer-encoding", b"chunked")], messages)
    assert downstream.calls == [] and read == 2
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_too_large"
