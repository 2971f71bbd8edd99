"""core/group_send.py against the real Redis: a batch of group sends reaches channels-redis's
ordinary receive exactly as one group_send per message would, in order, honouring capacities and
group expiry."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from core.group_send import group_send_many


def _layer(**options: Any) -> RedisChannelLayer:
    # A prefix of its own per test: nothing left by another test (or run) can be received here.
    return RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=f"gs{uuid.uuid4().hex[:8]}", **options)


async def _drain(layer: Any, channel: str, timeout: float = 0.3) -> list[dict[str, Any]]:
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), timeout))
        except TimeoutError:
            return got


def test_a_batch_reaches_every_member_in_order_as_group_send_would():
    async def scenario() -> None:
        layer = _layer()
        process_a, process_b = await layer.new_channel(), await layer.new_channel()  # "specific.…!…"
        plain = f"plain.{uuid.uuid4().hex}"
        await layer.group_add("ws.1", process_a)
        await layer.group_add("ws.1", process_b)
        await layer.group_add("run.9", process_a)
        await layer.group_add("run.9", plain)
        batch = [("ws.1", {"type": "e", "n": 1}), ("run.9", {"type": "e", "n": 2}), ("nobody", {"type": "e", "n": 3}),
                 ("ws.1", {"type": "e", "n": 4}), ("run.9", {"type": "e", "n": 5})]
        assert await group_send_many(layer, batch) == 0
        # when: a second batch right behind the first
        await group_send_many(layer, [("ws.1", {"type": "e", "n": 6})])
        assert [m["n"] for m in await _drain(layer, process_a)] == [1, 2, 4, 5, 6]
        assert [m["n"] for m in await _drain(layer, process_b)] == [1, 4, 6]
        assert [m["n"] for m in await _drain(layer, plain)] == [2, 5]

        # The same message through channels-redis's own group_send arrives identical.
        await layer.group_send("run.9", {"type": "e", "n": 7, "nested": {"a": [1, "x"]}})
        await group_send_many(layer, [("run.9", {"type": "e", "n": 7, "nested": {"a": [1, "x"]}})])
        theirs, ours = await _drain(layer, plain)
        assert theirs == ours == {"type": "e", "n": 7, "nested": {"a": [1, "x"]}}
        await layer.flush()

    asyncio.run(scenario())


def test_a_channel_at_capacity_refuses_the_push_and_says_so():
    async def scenario() -> None:
        layer = _layer(capacity=2)
        channel = f"full.{uuid.uuid4().hex}"
        await layer.group_add("g", channel)
        over = await group_send_many(layer, [("g", {"type": "e", "n": n}) for n in range(4)])
        assert over == 2
        assert [m["n"] for m in await _drain(layer, channel)] == [0, 1]
        await layer.flush()

    asyncio.run(scenario())


def test_members_past_the_group_expiry_no_longer_receive():
    async def scenario() -> None:
        layer = _layer(group_expiry=1)
        stale, fresh = f"stale.{uuid.uuid4().hex}", f"fresh.{uuid.uuid4().hex}"
        await layer.group_add("g", stale)
        # The stale member joined "two seconds ago": its score in the group's set is its join time.
        connection = layer.connection(layer.consistent_hash("g"))
        await connection.zadd(layer._group_key("g"), {stale: int(time.time()) - 2})
        await layer.group_add("g", fresh)
        await group_send_many(layer, [("g", {"type": "e"})])
        assert await _drain(layer, fresh) == [{"type": "e"}]
        assert await _drain(layer, stale, timeout=0.1) == []
        assert [m.decode() for m in await connection.zrange(layer._group_key("g"), 0, -1)] == [fresh]
        await layer.flush()

    asyncio.run(scenario())


def test_another_kind_of_layer_gets_one_group_send_per_message():
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        batch = [("g", {"type": "e", "n": 1}), ("other", {"type": "e"}), ("g", {"type": "e", "n": 2})]
        await group_send_many(layer, batch)
        assert [(await layer.receive(channel))["n"] for _ in range(2)] == [1, 2]

    asyncio.run(scenario())
