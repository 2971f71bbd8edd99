"""Back-pressure (E3): a client that stops reading is closed with 4008 once its bounded send queue
is full; the producer never waits for it and the server keeps serving everyone else."""

from __future__ import annotations

import socket
import time

import pytest
from django.conf import settings
from django.db import transaction
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from accounts.models import Role
from core.events import _sender, publish

from .conftest import SEND_QUEUE, TunedServer, browser_socket, receive, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


class StuckClient:
    """A websocket client on a raw socket with a tiny receive buffer, that reads only when told
    to: between handshake and :meth:`drain` the server's writes pile up."""

    def __init__(self, server: TunedServer, path: str, headers: dict[str, str]) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        self.sock.connect(("127.0.0.1", server.port))
        self.protocol = ClientProtocol(parse_uri(server.ws + path), max_size=None)
        request = self.protocol.connect()
        for name, value in headers.items():
            request.headers[name] = value
        self.protocol.send_request(request)
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        self.sock.settimeout(10)
        while not any(isinstance(e, Response) for e in self._read_once()):
            pass

    def _read_once(self) -> list[object]:
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return list(self.protocol.events_received())

    def drain(self) -> tuple[int, int | None]:
        """Read until the server closes: (messages received, close code or None)."""
        messages = 0
        while True:
            try:
                events = self._read_once()
            except (TimeoutError, OSError):
                return messages, None
            for event in events:
                if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    messages += 1
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    return messages, Close.parse(event.data).code
            if self.protocol.close_code is not None or not events and self.protocol.state.name == "CLOSED":
                return messages, self.protocol.close_code

    def close(self) -> None:
        self.sock.close()


def _flood(workspace_id, count: int, size: int) -> float:  # type: ignore[no-untyped-def]
    """Publish ``count`` events of ``size`` bytes from this process (another producer sharing
    Redis, like a worker); return how long publishing took."""
    started = time.monotonic()
    for i in range(count):
        with transaction.atomic():
            publish(workspace_id=workspace_id, type="test.flood", data={"i": i, "pad": "x" * size})
    assert _sender.flush(timeout=60)
    return time.monotonic() - started


def _hubs_caught_up(timeout: float = 30) -> bool:
    """Whether the servers' live hubs have taken every queued message from Redis (their queues are
    the layer's "specific." channels): the events have then reached the sockets' own queues."""
    import redis

    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    client = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queues = list(client.scan_iter(match=f"{config['prefix']}specific.*!", count=1000))
        if not any(client.zcard(queue) for queue in queues):
            return True
        time.sleep(0.05)
    return False


def test_a_client_that_does_not_read_is_closed_and_the_server_stays_responsive(live_servers, acme):
    one, _ = live_servers
    stuck = StuckClient(one, "/ws/v1/workspaces/acme/events/",
                        {"Origin": one.url, "Cookie": f"sessionid={session_cookie(acme.users[Role.VIEWER])}"})
    try:
        flood = SEND_QUEUE * 10
        # All of it reaches the server: its hub's queue in Redis holds more (core.live.hub), so what
        # fills up is this socket's own queues, however far behind the hub falls.
        assert flood < settings.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"]
        elapsed = _flood(acme.workspace.pk, count=flood, size=32_000)
        assert elapsed < 20  # the producer never waited for the stuck client
        # Under load the server's hub can still be taking the flood from Redis; had the client
        # started reading meanwhile, it would keep up and rightly never be closed.
        assert _hubs_caught_up()
        # Everyone else is served promptly meanwhile.
        with browser_socket(one, "acme", acme.users[Role.DEVELOPER]) as healthy:
            assert receive(healthy)["type"] == "hello"
            started = time.monotonic()
            healthy.send('{"action": "ping"}')
            assert receive(healthy) == {"type": "pong"}
            assert time.monotonic() - started < 1.0
        # Reading again, the stuck client finds the server closed it with 4008 after what it had
        # already written: far fewer messages than were published.
        received, code = stuck.drain()
        assert code == 4008
        assert received < flood
    finally:
        stuck.close()
