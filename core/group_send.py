"""A batch of channel-layer group sends to Redis in two round trips per Redis connection, not two to
four per message.

channels-redis's ``group_send`` makes two round trips for each message (drop the group's expired
members, read its members) and two more when the group has members (drop the channel's expired
messages, push): the background sender of :mod:`core.events` spent most of its time there, a
seventh of a busy server process's CPU (docs/performance.md, "Fourth round"). :func:`group_send_many`
does the same work for a whole batch: one pipeline reads every group's members, then one script
per connection pushes every message, in the batch's order.

It keeps to the layer's own key names, serializer, capacities and expiries, so receivers are
channels-redis's ordinary ``receive`` (channels-redis is pinned; tests/core/test_group_send.py
holds the two paths to the same result). Within a process, messages to one channel are received
in the order they were sent: their scores in the channel's sorted set only ever increase.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from channels_redis.core import RedisChannelLayer

# Per channel key: drop messages past the expiry, push unless at capacity, keep the key as long as
# its newest message. ARGV: (message, capacity, score) per key, then the expiry cut-off and seconds.
_PUSH = """
local cutoff = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
local over = 0
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[3 * i - 1]) then
        redis.call('ZADD', KEYS[i], ARGV[3 * i], ARGV[3 * i - 2])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over = over + 1
    end
end
return over
"""

_score_lock = threading.Lock()
_last_score = 0.0


def _scores(count: int) -> list[float]:
    """Increasing scores from the current time (a later batch never sorts before an earlier one)."""
    global _last_score
    with _score_lock:
        base = max(time.time(), _last_score + 1e-6)
        # 1 µs apart: distinct doubles at today's epoch (their spacing is about 0.24 µs).
        scores = [base + i * 1e-6 for i in range(count)]
        _last_score = scores[-1] if scores else _last_score
    return scores


async def group_send_many(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> int:
    """Send each ``(group, message)`` to its group's channels; return how many pushes were refused
    for a channel at capacity (as channels-redis logs them). A layer other than channels-redis's
    core layer gets one ``group_send`` per message."""
    if not isinstance(layer, RedisChannelLayer):
        for group, message in messages:
            await layer.group_send(group, message)
        return 0
    members = await _members(layer, [group for group, _ in messages])
    # Per connection: the channel keys in batch order, with their message and capacity.
    pushes: dict[int, list[tuple[bytes | str, bytes, int]]] = defaultdict(list)
    for (_, message), channels in zip(messages, members, strict=True):
        if not channels:
            continue
        by_connection, key_message, key_capacity = layer._map_channel_keys_to_connection(channels, message)
        for index, keys in by_connection.items():
            pushes[index].extend((key, key_message[key], key_capacity[key]) for key in keys)
    over = 0
    now = int(time.time())
    for index, items in pushes.items():
        args: list[Any] = []
        for (_, payload, capacity), score in zip(items, _scores(len(items)), strict=True):
            args += [payload, capacity, repr(score)]
        args += [now - int(layer.expiry), int(layer.expiry)]
        over += int(await layer.connection(index).eval(_PUSH, len(items), *[key for key, _, _ in items], *args))
    return over


async def _members(layer: RedisChannelLayer, groups: list[str]) -> list[list[str]]:
    """Each group's channels, after dropping those past the group expiry: one pipeline per connection."""
    cutoff = int(time.time()) - layer.group_expiry
    by_connection: dict[int, list[int]] = defaultdict(list)
    for position, group in enumerate(groups):
        assert layer.require_valid_group_name(group), "Group name not valid"
        by_connection[layer.consistent_hash(group)].append(position)
    found: list[list[str]] = [[] for _ in groups]
    for index, positions in by_connection.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for position in positions:
            key = layer._group_key(groups[position])
            pipe.zremrangebyscore(key, min=0, max=cutoff)
            pipe.zrange(key, 0, -1)
        replies = await pipe.execute()
        for n, position in enumerate(positions):
            found[position] = [name.decode("utf8") for name in replies[2 * n + 1]]
    return found
