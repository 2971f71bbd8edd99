"""The per-workspace seq and bounded replay store (E2), on the test Redis and in memory, and that
a Redis outage never fails or delays a write (G3)."""

from __future__ import annotations

import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction

from core.event_log import REPLAY_MAX_AGE_SECONDS, REPLAY_MAX_EVENTS, MemoryEventLog, RedisEventLog, _select
from core.events import _sender, publish


def _redis_log() -> RedisEventLog:
    return RedisEventLog(settings.REDIS_URL, f"test-{uuid.uuid4().hex[:8]}")


def _event(i: int) -> dict:
    return {"type": "flow_run.created", "data": {"i": i}}


def test_redis_seqs_are_strictly_increasing_per_workspace_and_replay_is_filtered_by_run():
    log, ws, other = _redis_log(), str(uuid.uuid4()), str(uuid.uuid4())
    run = str(uuid.uuid4())

    async def scenario():
        first = await log.append_many([(ws, _event(1), None), (ws, _event(2), run), (other, _event(3), None)])
        second = await log.append_many([(ws, _event(4), None)])
        base = first[0] - 1
        return first, second, await log.replay(ws, base), await log.replay(ws, base + 1, run), await log.latest(ws)

    first, second, everything, in_run, latest = async_to_sync(scenario)()
    # Each counter starts at the Redis clock (core.event_log), then counts one by one.
    base, other_base = first[0] - 1, first[2] - 1
    assert first == [base + 1, base + 2, other_base + 1] and second == [base + 3] and latest == base + 3
    assert [(e["seq"] - base, e["event"]["data"]["i"]) for e in everything.events] == [(1, 1), (3, 4)]
    assert not everything.gap and everything.latest == base + 3
    assert [(e["seq"] - base, e["flow_run_id"]) for e in in_run.events] == [(2, run)]


def test_redis_replay_is_bounded_and_reports_a_gap():
    log, ws = _redis_log(), str(uuid.uuid4())

    async def scenario():
        seqs = await log.append_many([(ws, _event(i), None) for i in range(REPLAY_MAX_EVENTS + 5)])
        base = seqs[0] - 1
        return base, await log.replay(ws, base), await log.replay(ws, base + 10), await log.replay(ws, seqs[-1] + 10**6)

    base, trimmed, still_kept, ahead = async_to_sync(scenario)()
    assert trimmed.gap and len(trimmed.events) == REPLAY_MAX_EVENTS and trimmed.events[0]["seq"] == base + 6
    assert not still_kept.gap and still_kept.events[0]["seq"] == base + 11
    assert ahead.gap and ahead.events == []  # a seq from before the store was reset


def test_memory_log_behaves_the_same():
    log, ws = MemoryEventLog(), "w"
    seqs = [log.append(ws, _event(i), None) for i in range(REPLAY_MAX_EVENTS + 2)]
    assert seqs == list(range(1, REPLAY_MAX_EVENTS + 3))
    replay = async_to_sync(log.replay)(ws, 0)
    assert replay.gap and replay.events[0]["seq"] == 3
    assert not async_to_sync(log.replay)(ws, 2).gap


def test_events_older_than_ten_minutes_are_not_replayed():
    now = time.time()
    old, fresh = now - REPLAY_MAX_AGE_SECONDS - 1, now - 1
    replay = _select([(1, old, None, _event(1)), (2, fresh, None, _event(2))], after=0, latest=2,
                     flow_run_id=None, now=now)
    assert replay.gap and [e["seq"] for e in replay.events] == [2]


@pytest.mark.django_db(transaction=True)
def test_a_redis_outage_neither_fails_nor_delays_the_write_and_the_sender_recovers(settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
    channel_layers.backends.pop("default", None)
    try:
        started = time.monotonic()
        for _ in range(20):
            with transaction.atomic():
                publish(workspace_id=uuid.uuid4(), type="flow_run.created", data={})
        assert time.monotonic() - started < 0.5  # writes never wait for Redis
        assert _sender.flush(timeout=30)  # the outage was absorbed, nothing is stuck
    finally:
        channel_layers.backends.pop("default", None)
    assert _sender._thread is not None and _sender._thread.is_alive()
