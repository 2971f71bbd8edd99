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


# --- the gate: how many requests run at once, of the pool's threads ------------------------------


async def _receive_empty() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _request(bridge: ThreadedWSGI, path: str) -> Any:
    """One GET of ``path`` through ``bridge``; returns the coroutine and the list it sends into."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return bridge(_scope(method="GET", path=path), _receive_empty, send), sent


def _gated(active: int, n: int) -> tuple[list[str], int]:
    """``n`` requests, each arriving after the one before reached the gate, through a gate of
    ``active`` on eight threads; returns the order they went in and how many ran at once at most."""
    running = 0
    most = 0
    entered: list[str] = []
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            entered.append(environ["PATH_INFO"])
        threading.Event().wait(0.02)  # long enough for the others to pile up behind the gate
        with lock:
            running -= 1
        start_response("200 OK", [])
        return [b"ok"]

    bridge = ThreadedWSGI(app, workers=8, active=active)

    async def many() -> None:
        tasks = []
        for i in range(n):
            coro, _ = _request(bridge, f"/r{i}/")
            tasks.append(asyncio.ensure_future(coro))
            await asyncio.sleep(0)  # this request reaches the gate before the next one arrives
        await asyncio.gather(*tasks)

    asyncio.run(many())
    bridge.executor.shutdown(wait=True)
    return entered, most


def test_no_more_requests_run_at_once_than_the_gate_lets_in():
    entered, most = _gated(active=2, n=12)
    assert len(entered) == 12 and most == 2


def test_requests_behind_the_gate_go_in_in_order_of_arrival():
    entered, most = _gated(active=1, n=8)
    assert entered == [f"/r{i}/" for i in range(8)] and most == 1


def test_a_streaming_response_gives_its_place_to_the_next_request_while_it_streams():
    second_done = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/stream/":
            return _Waiting(second_done)
        return [b"quick"]

    bridge = ThreadedWSGI(app, workers=2, active=1)

    async def both() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        streaming, stream_sent = _request(bridge, "/stream/")
        quick, quick_sent = _request(bridge, "/quick/")
        first = asyncio.ensure_future(streaming)
        await asyncio.sleep(0.05)
        # With the stream holding the only place, this request would wait for ever (the stream
        # waits for it): the timeout fails the test instead.
        await asyncio.wait_for(quick, timeout=5)
        second_done.set()
        await asyncio.wait_for(first, timeout=5)
        return stream_sent, quick_sent

    stream_sent, quick_sent = asyncio.run(both())
    bridge.executor.shutdown(wait=True)
    assert quick_sent[1]["body"] == b"quick"
    assert b"".join(m.get("body", b"") for m in stream_sent[1:]) == b"before;after;"


class _Waiting:
    """A streaming body whose second chunk waits for ``event``."""

    streaming = True

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __iter__(self) -> Iterator[bytes]:
        yield b"before;"
        assert self.event.wait(5)
        yield b"after;"


def test_a_failed_request_gives_its_place_back():
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/boom/":
            raise RuntimeError("boom")
        start_response("200 OK", [])
        return [b"ok"]

    bridge = ThreadedWSGI(app, workers=2, active=1)

    async def run() -> list[dict[str, Any]]:
        failing, _ = _request(bridge, "/boom/")
        with pytest.raises(RuntimeError, match="boom"):
            await failing
        fine, sent = _request(bridge, "/fine/")
        await asyncio.wait_for(fine, timeout=5)
        return sent

    sent = asyncio.run(run())
    bridge.executor.shutdown(wait=True)
    assert sent[1]["body"] == b"ok"


def test_a_request_the_server_gave_up_on_keeps_its_place_until_its_thread_is_done():
    release = threading.Event()
    entered: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        entered.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/slow/":
            assert release.wait(5)
        start_response("200 OK", [])
        return [b"ok"]

    bridge = ThreadedWSGI(app, workers=2, active=1)

    async def run() -> list[dict[str, Any]]:
        slow_coro, _ = _request(bridge, "/slow/")
        slow = asyncio.ensure_future(slow_coro)
        await asyncio.sleep(0.05)
        slow.cancel()
        next_coro, sent = _request(bridge, "/next/")
        following = asyncio.ensure_future(next_coro)
        await asyncio.sleep(0.1)
        # The slow request's thread still runs: the next one has not gone in.
        assert entered == ["/slow/"]
        release.set()
        await asyncio.wait_for(following, timeout=5)
        return sent

    sent = asyncio.run(run())
    bridge.executor.shutdown(wait=True)
    assert entered == ["/slow/", "/next/"]
    assert sent[1]["body"] == b"ok"


# --- a place kept for requests with a key -------------------------------------------------------


def _held_app(release: threading.Event, entered: list[str]) -> Any:
    """A WSGI application whose requests to ``…/slow/`` hold their thread until ``release`` is set."""
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:
            entered.append(environ["PATH_INFO"])
        if environ["PATH_INFO"].endswith("/slow/"):
            assert release.wait(5)
        start_response("200 OK", [])
        return [b"ok"]

    return app


def _is_agent(environ: dict[str, Any]) -> bool:
    """Stands for the server's rule (a key on /api/, no cookie): paths under /agent."""
    return environ["PATH_INFO"].startswith("/agent")


def test_other_requests_never_hold_the_place_kept_for_requests_with_a_key():
    release = threading.Event()
    entered: list[str] = []
    bridge = ThreadedWSGI(_held_app(release, entered), workers=8, active=3, reserve_for=_is_agent)

    async def run() -> list[dict[str, Any]]:
        pages = []
        for i in range(4):
            pages.append(asyncio.ensure_future(_request(bridge, f"/page{i}/slow/")[0]))
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        # Slow pages hold two of the three places; the others wait for one of those two.
        assert sorted(entered) == ["/page0/slow/", "/page1/slow/"]
        agent, sent = _request(bridge, "/agent/claim/")
        # Without the kept place the agent would wait behind the pages (the timeout fails the test).
        await asyncio.wait_for(agent, timeout=5)
        assert entered[2:] == ["/agent/claim/"]
        release.set()
        await asyncio.wait_for(asyncio.gather(*pages), timeout=5)
        return sent

    sent = asyncio.run(run())
    bridge.executor.shutdown(wait=True)
    assert sent[1]["body"] == b"ok"
    assert sorted(entered) == ["/agent/claim/", *(f"/page{i}/slow/" for i in range(4))]


def test_requests_with_a_key_may_take_every_place():
    release = threading.Event()
    entered: list[str] = []
    bridge = ThreadedWSGI(_held_app(release, entered), workers=8, active=3, reserve_for=_is_agent)

    async def run() -> None:
        agents = []
        for i in range(4):
            agents.append(asyncio.ensure_future(_request(bridge, f"/agent{i}/slow/")[0]))
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        assert entered == ["/agent0/slow/", "/agent1/slow/", "/agent2/slow/"]  # the fourth waits
        release.set()
        await asyncio.wait_for(asyncio.gather(*agents), timeout=5)

    asyncio.run(run())
    bridge.executor.shutdown(wait=True)
    assert len(entered) == 4


def test_with_a_single_place_nothing_is_kept_and_other_requests_still_run():
    bridge = ThreadedWSGI(echo, workers=2, active=1, reserve_for=_is_agent)

    async def run() -> list[dict[str, Any]]:
        page, sent = _request(bridge, "/page/")
        await asyncio.wait_for(page, timeout=5)
        return sent

    sent = asyncio.run(run())
    bridge.executor.shutdown(wait=True)
    assert sent[0]["status"] == 201


def test_a_request_given_up_while_waiting_gives_back_the_places_it_took():
    release = threading.Event()
    entered: list[str] = []
    bridge = ThreadedWSGI(_held_app(release, entered), workers=8, active=2, reserve_for=_is_agent)

    async def run() -> None:
        # Two slow agents hold both places …
        held = [asyncio.ensure_future(_request(bridge, f"/agent{i}/slow/")[0]) for i in range(2)]
        await asyncio.sleep(0.1)
        # … so a page takes the only place open to it and waits at the gate, until given up.
        waiting = asyncio.ensure_future(_request(bridge, "/page-a/")[0])
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await asyncio.wait_for(asyncio.gather(*held), timeout=5)
        # Had the page given up kept its place, this one would wait for ever (the timeout fails).
        await asyncio.wait_for(_request(bridge, "/page-b/")[0], timeout=5)

    asyncio.run(run())
    bridge.executor.shutdown(wait=True)
    assert sorted(entered) == ["/agent0/slow/", "/agent1/slow/", "/page-b/"]


def test_the_server_keeps_the_place_for_requests_with_a_key():
    from config.asgi import http_application
    from config.key_lane import is_key_request

    assert http_application.reserve_for is is_key_request
