"""Django's WSGI handler on a bounded pool of reused threads, for the HTTP side of :mod:`config.asgi`,
with one hand-over from the event loop to a thread and one back per request.

A general WSGI-to-ASGI adapter (a2wsgi, which served here before) lets the application read the
body and send each piece of the response from its thread, each time waiting on the event loop: five
or six blocking cross-thread hand-overs per request, each waking the other thread, which cost about a
tenth of a server process's CPU (docs/performance.md, "Fourth round"). Here:

- the body is read on the event loop before the request is handed over (:mod:`config.body_limit`
  has already refused one over the size limit, so it is bounded), and the thread reads it from
  memory;
- an ordinary response is built whole on the thread and returned with the thread's result; the
  event loop then sends it. The thread never waits for the event loop;
- a streaming response (a file, a log download: Django marks them ``streaming``) is sent chunk by
  chunk as the thread produces it, each chunk waiting until the event loop has taken it, so a slow
  client holds back the producer instead of filling memory.

At most ``active`` requests run at once (``FLOWDECK_WEB_ACTIVE``); the others wait on the event loop,
in order of arrival (asyncio's semaphore lets no late comer pass a waiting one). A process runs
Python on one core at a time: a few requests at once keep it busy while one waits on the database,
and more only take the GIL from one another, which costs CPU and stretches the slowest requests. A
streaming response gives its place to the next request once it starts sending, since it then waits
on its client; the pool's threads beyond ``active`` are for those.

One of the places can be kept for some requests (``reserve_for``; the server keeps it for requests
that carry a key: agents, the SDK, scripts): the others hold at most ``active - 1`` places, so slow
pages or GraphQL queries from browsers can never hold every place while agents' claims and state
reports wait behind them.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# What travels back from a thread for an ordinary response: status, headers and the whole body.
Whole = tuple[int, list[tuple[bytes, bytes]], bytes]


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def build_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP scope (PEP 3333 strings: latin-1 "bytes as text")."""
    script_name = scope.get("root_path", "").encode("utf8").decode("latin1")
    path_info = scope["path"].encode("utf8").decode("latin1")
    if script_name and path_info.startswith(script_name):
        path_info = path_info[len(script_name):]
    server_name, server_port = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope["query_string"].decode("ascii"),
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port or 0),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin1")
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin1")
        # Repeated headers are joined with commas, as one header with a list of values.
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


async def _sent(send: Send, message: Message) -> None:
    await send(message)


class _Call:
    """One request on its thread."""

    def __init__(self, app: WSGIApp, environ: dict[str, Any], loop: asyncio.AbstractEventLoop, send: Send) -> None:
        self.app, self.environ, self.loop, self.send = app, environ, loop, send
        self.places: list[asyncio.Semaphore] = []  # the gates this request holds a place in
        self.left_gate = False
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []

    async def enter_gate(self, gates: list[asyncio.Semaphore]) -> None:
        """Take a place in each of ``gates``, in turn (on the event loop)."""
        try:
            for gate in gates:
                await gate.acquire()
                self.places.append(gate)
        except BaseException:  # cancelled while waiting: the places taken so far go back
            self.leave_gate()
            raise

    def leave_gate(self) -> None:
        """Give the request's places to the next ones (on the event loop; once)."""
        if not self.left_gate:
            self.left_gate = True
            for gate in reversed(self.places):
                gate.release()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.headers:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.strip().lower().encode("latin1"), value.strip().encode("latin1"))
                        for name, value in headers]
        return self._write

    def _write(self, chunk: bytes) -> None:
        raise NotImplementedError("the write() callable of WSGI is not supported; return an iterable")

    def run(self) -> Whole | None:
        iterable = self.app(self.environ, self.start_response)
        try:
            if getattr(iterable, "streaming", False):
                # Sending a stream waits on the client, not the CPU: its place goes to the next request.
                self.loop.call_soon_threadsafe(self.leave_gate)
                self._stream(iterable)
                return None
            return self.status, self.headers, b"".join(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    def _stream(self, iterable: Iterable[bytes]) -> None:
        self._send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        for chunk in iterable:
            if chunk:
                self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        self._send({"type": "http.response.body", "body": b""})

    def _send(self, message: Message) -> None:
        asyncio.run_coroutine_threadsafe(_sent(self.send, message), self.loop).result()


class ThreadedWSGI:
    """An ASGI application for HTTP that runs a WSGI application on ``workers`` reused threads,
    named ``WSGI_0`` … (module docstring)."""

    def __init__(self, app: WSGIApp, workers: int, active: int | None = None,
                 reserve_for: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")
        self.active = min(active or workers, workers)
        # With one place kept (module docstring), the requests ``reserve_for`` does not pick pass
        # a gate of ``active - 1`` first; with a single place there is nothing to keep.
        self.reserve_for = reserve_for if self.active > 1 else None
        self._gates: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore, asyncio.Semaphore] | None = None

    def gates_for(self, environ: dict[str, Any], loop: asyncio.AbstractEventLoop) -> list[asyncio.Semaphore]:
        """The gates a request passes, in order (made on the loop that serves)."""
        if self._gates is None or self._gates[0] is not loop:
            self._gates = loop, asyncio.Semaphore(self.active), asyncio.Semaphore(max(self.active - 1, 1))
        _, gate, unreserved = self._gates
        if self.reserve_for is None or self.reserve_for(environ):
            return [gate]
        return [unreserved, gate]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http", scope["type"]
        try:
            body = await read_body(receive)
        except ClientGone:
            return
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, body)
        call = _Call(self.app, environ, loop, send)
        await call.enter_gate(self.gates_for(environ, loop))
        try:
            # Each request runs in a copy of the server's context, as on a thread of its own.
            running = self.executor.submit(contextvars.copy_context().run, call.run)
        except BaseException:  # the pool is shut down: the process is stopping
            call.leave_gate()
            raise
        try:
            whole = await asyncio.wrap_future(running, loop=loop)
        except asyncio.CancelledError:
            # The server gave up on the request, but its thread may still be running it: its place
            # in the gate is given back when the thread is done.
            running.add_done_callback(lambda _: loop.call_soon_threadsafe(call.leave_gate))
            raise
        except BaseException:
            call.leave_gate()
            raise
        call.leave_gate()
        if whole is None:
            return  # streamed from the thread
        status, headers, content = whole
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
