"""A burst that outruns a process's live hub beyond its queue's capacity is dropped, never silently
(E3, G3): the sender marks the full queue, the hub's watcher takes the marker and tells each of its
sockets once to resync, so browsers get ``gap`` and refetch instead of missing events unawares."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.db import transaction

from accounts.models import Role
from core.events import _push, _sender, publish
from core.live.hub import Hub
from tests.sdk.conftest import LiveServer

from .conftest import TunedServer, browser_socket, receive, receive_until
from .test_hub_recovery import Socket

CAPACITY = 5


class StalledHub(Hub):
    """A hub whose receive loop has fallen behind entirely, and whose watcher the test runs itself."""

    async def _receive_forever(self) -> None:
        await asyncio.Event().wait()

    async def _watch_forever(self) -> None:
        await asyncio.Event().wait()


def test_a_hub_whose_queue_overflowed_tells_each_of_its_sockets_once_to_resync():
    async def scenario() -> dict[str, Any]:
        config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
        prefix = f"hubovf{uuid.uuid4().hex[:8]}"
        # Two server processes, each with its layer.
        layer, other_layer = (RedisChannelLayer(hosts=config["hosts"], prefix=prefix, capacity=CAPACITY)
                              for _ in range(2))
        slow, other = StalledHub(layer=layer), StalledHub(layer=other_layer)
        dashboard, agent, elsewhere = Socket(), Socket(), Socket()
        try:
            await slow.join("ws.acme", dashboard)
            await slow.join("live.agents.acme", agent)
            await other.join("ws.globex", elsewhere)
            assert slow.channel is not None

            async def push(n: int) -> None:
                for i in range(n):
                    await asyncio.to_thread(_push, layer, [slow.channel],
                                            {"type": "flowdeck.agent", "group": "ws.acme", "i": i})

            await push(CAPACITY)  # up to the capacity: nothing dropped
            await slow.check()
            await other.check()
            at_capacity = len(dashboard.of_type("flowdeck.resync"))
            await push(2)  # beyond it: dropped and marked
            await slow.check()
            await other.check()
            after_drop = (len(dashboard.of_type("flowdeck.resync")), len(agent.of_type("flowdeck.resync")))
            await slow.check()  # the marker was taken: no second resync for the same drop
            return {"at_capacity": at_capacity, "after_drop": after_drop,
                    "after_second_check": len(dashboard.of_type("flowdeck.resync")),
                    "elsewhere": elsewhere.of_type("flowdeck.resync"), "overflows": (slow.overflows, other.overflows),
                    "queued": await layer.connection(0).zcard(layer.prefix + layer.non_local_name(slow.channel))}
        finally:
            await slow.close()
            await other.close()
            await layer.close_pools()
            await other_layer.close_pools()

    seen = async_to_sync(scenario)()
    assert seen["at_capacity"] == 0
    assert seen["queued"] == CAPACITY
    assert seen["after_drop"] == (1, 1)  # every local socket, once (the agent's socket is in another group)
    assert seen["after_second_check"] == 1
    assert seen["elsewhere"] == [] and seen["overflows"] == (1, 0)  # the other process lost nothing


class DefaultServer(TunedServer):
    """A server with the production queue sizes: the socket itself keeps up with the burst."""

    def env(self) -> dict[str, str]:
        return LiveServer.env(self)


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory) -> Iterator[DefaultServer]:  # type: ignore[no-untyped-def]
    server = DefaultServer(periodic_every=None, log_dir=tmp_path_factory.mktemp("overflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_burst_beyond_a_stopped_servers_queue_reaches_its_browsers_as_a_gap(server, acme):
    """The server process is stopped (SIGSTOP) while more events than its hub's queue holds are
    committed; once it runs again its browser socket gets what was queued and a ``gap``."""
    capacity = settings.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"]
    published = capacity + 50
    assert server.proc is not None
    with browser_socket(server, "acme", acme.users[Role.VIEWER]) as ws:
        assert receive(ws)["type"] == "hello"
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with transaction.atomic():
                for i in range(published):
                    publish(workspace_id=acme.workspace.pk, type="test.burst", data={"i": i})
            assert _sender.flush(timeout=60)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        _, before = receive_until(ws, lambda m: m["type"] == "gap", timeout=30)
        after: list[dict[str, Any]] = []
        while True:  # what was still queued when the gap came
            try:
                after.append(receive(ws, timeout=2))
            except TimeoutError:
                break
        events = [m["event"]["data"]["i"] for m in before + after if m["type"] == "event"]
        assert not [m for m in after if m["type"] == "gap"]  # told once
        # What the queue held arrived (one more when the hub's blocking pop was already waiting in
        # Redis as it stopped): the first events, none missing in between; the rest was dropped.
        assert sorted(events) == list(range(len(events)))
        assert capacity <= len(events) <= capacity + 1 < published
