"""The seq never goes back below what a client may have seen when Redis loses a workspace's counter
(issue 9 (2); core.event_log): a missing counter starts at the Redis clock in milliseconds, and each
process raises a counter to the highest seq it has handed out, delivered or read (its floor).

Two ``RedisEventLog`` objects on the same Redis and prefix stand for two server processes: each has
its own floor, the counters are shared. Deleting the keys is what an empty restart does to them."""

from __future__ import annotations

import uuid

import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from core.event_log import MemoryEventLog, RedisEventLog
from core.live.hub import Hub
from tests.sdk.e2e.harness import wait_for


def _event(i: int) -> dict:
    return {"type": "flow_run.created", "data": {"i": i}}


def _processes() -> tuple[RedisEventLog, RedisEventLog, str]:
    prefix = f"test-floor-{uuid.uuid4().hex[:8]}"
    return RedisEventLog(settings.REDIS_URL, prefix), RedisEventLog(settings.REDIS_URL, prefix), prefix


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def _lose(prefix: str, workspace_id: str) -> None:
    """What an empty restart (or a flush) does to one workspace's counter and stream."""
    _redis().delete(f"{prefix}:live:seq:{workspace_id}", f"{prefix}:live:log:{workspace_id}")


def _redis_clock_ms() -> int:
    seconds, micros = _redis().time()
    return seconds * 1000 + micros // 1000


def test_a_lost_counter_restarts_from_the_redis_clock_even_in_a_process_that_never_saw_it():
    a, b, prefix = _processes()
    ws = str(uuid.uuid4())
    seen = async_to_sync(a.append_many)([(ws, _event(1), None)])[0]
    _lose(prefix, ws)
    # The clock moved on past what was handed out (the bound: 1,000 events a second on average).
    wait_for(lambda: _redis_clock_ms() > seen, timeout=5, what="the Redis clock to pass the seq", interval=0.001)
    before = _redis_clock_ms()
    assert b.floor(ws) == 0  # b knew nothing of the old numbers

    after_loss = async_to_sync(b.append_many)([(ws, _event(2), None)])[0]

    assert after_loss > before > seen


def test_a_counter_found_below_the_floor_is_raised_to_it_for_every_process():
    a, b, prefix = _processes()
    ws = str(uuid.uuid4())
    seen = async_to_sync(a.append_many)([(ws, _event(1), None), (ws, _event(2), None)])[1]
    # The counter came back lower than what process a handed out (a restored snapshot, a clock
    # that went back): a's floor lifts it, and b numbers on from there.
    _redis().set(f"{prefix}:live:seq:{ws}", 5)

    from_a = async_to_sync(a.append_many)([(ws, _event(3), None)])[0]
    from_b = async_to_sync(b.append_many)([(ws, _event(4), None)])[0]

    assert (from_a, from_b) == (seen + 1, seen + 2)
    assert (a.floor(ws), b.floor(ws)) == (seen + 1, seen + 2)


def test_a_missing_counter_starts_at_the_floor_when_the_clock_is_behind_it():
    a, _, prefix = _processes()
    ws = str(uuid.uuid4())
    far_ahead = _redis_clock_ms() + 10**9  # a seq from a clock that has since gone back
    a.observe(ws, far_ahead)
    _lose(prefix, ws)

    assert async_to_sync(a.latest)(ws) == far_ahead
    assert async_to_sync(a.append_many)([(ws, _event(1), None)]) == [far_ahead + 1]


def test_after_a_loss_the_replay_reports_a_gap_and_a_latest_seq_no_lower_than_the_clients():
    a, b, prefix = _processes()
    ws = str(uuid.uuid4())
    client_saw = async_to_sync(a.append_many)([(ws, _event(i), None) for i in range(3)])[-1]
    _lose(prefix, ws)
    wait_for(lambda: _redis_clock_ms() > client_saw, timeout=5, what="the Redis clock to pass the seq", interval=0.001)

    # The client reconnects to the other process, which never numbered this workspace.
    replay = async_to_sync(b.replay)(ws, client_saw)
    following = async_to_sync(b.append_many)([(ws, _event(9), None)])[0]

    assert replay.gap and replay.events == []
    assert replay.latest >= client_saw
    assert following == replay.latest + 1  # the replay's latest seq started the counter: no hole, no overlap


def test_reading_the_latest_seq_does_not_move_an_existing_counter():
    a, _, _ = _processes()
    ws = str(uuid.uuid4())
    seq = async_to_sync(a.append_many)([(ws, _event(1), None)])[0]
    # The clock moves on; an existing counter must not follow it.
    wait_for(lambda: _redis_clock_ms() > seq + 1, timeout=5, what="the Redis clock to move", interval=0.001)

    assert async_to_sync(a.latest)(ws) == seq
    assert async_to_sync(a.append_many)([(ws, _event(2), None)]) == [seq + 1]


def test_memory_log_observes_a_floor_too():
    log, ws = MemoryEventLog(), "w"
    assert log.append(ws, _event(1), None) == 1
    log.observe(ws, 50)
    log.observe(ws, 10)  # lower: changes nothing

    assert log.floor(ws) == 50 and async_to_sync(log.latest)(ws) == 50
    assert log.append(ws, _event(2), None) == 51
    replay = async_to_sync(log.replay)(ws, 1)
    assert replay.gap and [e["seq"] for e in replay.events] == [51]  # 2..50 were never kept here


def test_the_hub_raises_the_floor_to_every_seq_it_delivers():
    hub, ws = Hub(), str(uuid.uuid4())
    assert isinstance(hub.log, RedisEventLog)

    hub.dispatch({"type": "flowdeck.event", "seq": 1234, "event": {"workspace_id": ws}, "group": "ws.nobody"})
    hub.dispatch({"type": "flowdeck.event", "seq": 1200, "event": {"workspace_id": ws}, "group": "ws.nobody"})

    assert hub.log.floor(ws) == 1234
