"""The process's live hub repairs itself when Redis goes away and comes back empty (issue 9 (2), G3):
a join while Redis is down does not fail, and within seconds of Redis answering again the hub has
re-added every group it has members for, still receives, and has told each local socket once that
messages may have been lost (``flowdeck.resync``). Against a redis-server of the test's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from core.live.hub import Hub
from tests.live.redis_process import RedisProcess

RECOVERY_SECONDS = 5


class Socket:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def deliver(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisProcess]:  # type: ignore[no-untyped-def]
    process = RedisProcess(tmp_path)
    process.start()
    yield process
    process.stop()


def _layer(url: str) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[{"address": url, "socket_timeout": 15, "socket_connect_timeout": 1}],
                             prefix="hubtest")


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def test_the_hub_rejoins_its_groups_and_keeps_receiving_after_redis_restarts_empty(own_redis):
    async def scenario() -> tuple[Socket, Socket, float | None, int]:
        layer = _layer(own_redis.url)
        hub = Hub(layer=layer)
        dashboard, agent = Socket(), Socket()
        try:
            await hub.join("ws.acme", dashboard)
            await hub.join("ws.acme", agent)
            # Given: the hub delivers.
            await layer.group_send("ws.acme", {"type": "flowdeck.agent", "group": "ws.acme", "n": 0})
            assert await _until(lambda: _true(len(agent.of_type("flowdeck.agent")) == 1), 5)

            await asyncio.to_thread(own_redis.stop)
            await hub.join("live.agents.acme", agent)  # while Redis is down: no error, repaired later
            await asyncio.to_thread(own_redis.start)
            back = time.monotonic()

            # Then, within seconds and without any socket doing anything, both groups deliver again.
            async def both_deliver() -> bool:
                n = len(agent.of_type("flowdeck.agent"))
                try:
                    await layer.group_send("ws.acme", {"type": "flowdeck.agent", "group": "ws.acme", "n": n})
                    await layer.group_send("live.agents.acme", {"type": "flowdeck.agent", "group": "live.agents.acme"})
                except Exception:  # noqa: BLE001 - this test's own sender met a connection Redis closed
                    return False
                await asyncio.sleep(0.2)
                groups = {m["group"] for m in agent.of_type("flowdeck.agent")[n:]}
                return groups == {"ws.acme", "live.agents.acme"}

            recovered = await _until(both_deliver, RECOVERY_SECONDS)
            return dashboard, agent, (time.monotonic() - back) if recovered else None, hub.resyncs
        finally:
            await hub.close()
            await layer.close_pools()

    dashboard, agent, recovered_after, resyncs = async_to_sync(scenario)()
    assert recovered_after is not None, f"groups not delivering within {RECOVERY_SECONDS}s: {agent.messages}"
    # Each local socket is told once that messages may have been lost, however many groups it is in.
    assert resyncs == 1
    assert len(dashboard.of_type("flowdeck.resync")) == 1 and len(agent.of_type("flowdeck.resync")) == 1


def test_a_flushed_redis_gets_the_groups_back_without_announcing_an_outage(own_redis):
    async def scenario() -> tuple[Socket, bool, int]:
        layer = _layer(own_redis.url)
        hub = Hub(layer=layer)
        socket = Socket()
        try:
            await hub.join("ws.acme", socket)
            redis = layer.connection(0)

            async def watched() -> bool:  # the hub has checked once: its sentinel is there
                return bool(await redis.keys("hubtest:live:hub:*"))

            assert await _until(watched, 5)
            await redis.flushdb()  # what Django's cache.clear() does to a shared database
            assert not await redis.keys("hubtest*")

            async def delivers() -> bool:
                n = len(socket.of_type("flowdeck.agent"))
                await layer.group_send("ws.acme", {"type": "flowdeck.agent", "group": "ws.acme"})
                await asyncio.sleep(0.2)
                return len(socket.of_type("flowdeck.agent")) > n

            return socket, await _until(delivers, RECOVERY_SECONDS), hub.resyncs
        finally:
            await hub.close()
            await layer.close_pools()

    socket, delivered, resyncs = async_to_sync(scenario)()
    assert delivered, f"the group was not re-added within {RECOVERY_SECONDS}s"
    assert resyncs == 0 and socket.of_type("flowdeck.resync") == []


async def _true(value: bool) -> bool:
    return value
