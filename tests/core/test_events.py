"""publish(): events go out after commit, only to the workspace's group (or, for what happens inside
a run, only to that run's group), and a broken channel layer never fails the write that caused them."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from core.event_log import get_event_log
from core.events import flow_run_group, overflow_marker, publish, workspace_group


def _layer():
    # A fresh layer per call: channels-redis binds its buffers to one event loop, and each
    # async_to_sync below runs its own loop.
    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    return RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=config["prefix"], capacity=config["capacity"])


def _subscribe(group: str) -> str:
    channel = f"test-events.{uuid.uuid4().hex}"

    async def add():
        await _layer().group_add(group, channel)

    async_to_sync(add)()
    return channel


def _receive(channel: str, timeout: float = 1.0):
    async def receive():
        try:
            return await asyncio.wait_for(_layer().receive(channel), timeout)
        except TimeoutError:
            return None

    return async_to_sync(receive)()


def _latest(workspace_id: uuid.UUID) -> int:
    from core.event_log import get_event_log

    log = get_event_log()
    assert log is not None
    return async_to_sync(log.latest)(str(workspace_id))


@pytest.mark.django_db(transaction=True)
def test_event_is_delivered_after_commit_to_the_workspace_group_only():
    ws, other, run = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mine, theirs = _subscribe(workspace_group(ws)), _subscribe(workspace_group(other))
    run_channel = _subscribe(flow_run_group(run))
    with transaction.atomic():
        publish(workspace_id=ws, type="flow_run.state_changed", data={"id": str(run)})
        assert _receive(mine, timeout=0.2) is None  # nothing before commit
    message = _receive(mine)
    assert message["event"]["type"] == "flow_run.state_changed"
    assert message["seq"] == _latest(ws)  # numbered by the workspace's counter (E2)
    assert message["event"]["workspace_id"] == str(ws)
    assert message["event"]["data"] == {"id": str(run)}
    assert _receive(theirs, timeout=0.2) is None
    assert _receive(run_channel, timeout=0.2) is None


@pytest.mark.django_db(transaction=True)
def test_events_inside_a_run_go_to_that_runs_group_only():
    ws, run, other_run = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    workspace, run_channel, other_channel = (_subscribe(workspace_group(ws)), _subscribe(flow_run_group(run)),
                                             _subscribe(flow_run_group(other_run)))
    with transaction.atomic():
        publish(workspace_id=ws, type="logs.appended", data={"count": 3}, flow_run_id=run)
    message = _receive(run_channel)
    assert (message["event"]["type"], message["event"]["data"]) == ("logs.appended", {"count": 3})
    assert (message["seq"], message["flow_run_id"]) == (_latest(ws), str(run))  # one seq shared with the workspace
    assert message["event"]["workspace_id"] == str(ws)
    assert _receive(workspace, timeout=0.2) is None
    assert _receive(other_channel, timeout=0.2) is None


@pytest.mark.django_db(transaction=True)
def test_rolled_back_change_is_never_announced():
    ws = uuid.uuid4()
    channel = _subscribe(workspace_group(ws))
    with pytest.raises(RuntimeError), transaction.atomic():
        publish(workspace_id=ws, type="flow_run.created", data={})
        raise RuntimeError("roll back")
    assert _receive(channel, timeout=0.3) is None


@pytest.mark.django_db(transaction=True)
def test_a_down_channel_layer_does_not_fail_the_write(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    from channels.layers import channel_layers

    channel_layers.backends.pop("default", None)
    try:
        with transaction.atomic():
            publish(workspace_id=uuid.uuid4(), type="flow_run.created", data={})
    finally:
        channel_layers.backends.pop("default", None)


def test_embedded_events_from_another_thread_reach_the_server_loop(settings):
    """Embedded mode: the periodic loop publishes from its own thread; the in-memory layer's queues
    belong to the server's event loop, so the send is handed to that loop."""
    import threading

    from channels.layers import channel_layers

    import core.events as events

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.pop("default", None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    previous = events._server_loop
    try:
        layer = channel_layers["default"]
        ws = uuid.uuid4()
        channel = asyncio.run_coroutine_threadsafe(layer.new_channel(), loop).result(5)
        asyncio.run_coroutine_threadsafe(layer.group_add(workspace_group(ws), channel), loop).result(5)
        events.bind_server_loop(loop)
        ran_on = []
        original = layer.group_send

        async def recording_group_send(group, message):  # type: ignore[no-untyped-def]
            ran_on.append(asyncio.get_running_loop())
            await original(group, message)

        layer.group_send = recording_group_send
        # when: published from this (non-server) thread, as the periodic loop does
        events._send([workspace_group(ws)], {"type": "flow_run.created", "workspace_id": str(ws), "data": {},
                                             "at": "2026-01-01T00:00:00+00:00"})
        # then: it arrives on the server's loop
        message = asyncio.run_coroutine_threadsafe(asyncio.wait_for(layer.receive(channel), 5), loop).result(10)
        assert message["event"]["type"] == "flow_run.created"
        assert ran_on == [loop]  # asyncio objects of the layer are only touched from their own loop
    finally:
        events._server_loop = previous
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        channel_layers.backends.pop("default", None)


def _redis():
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL)


def _flush_sender() -> None:
    from core.events import _sender

    assert _sender.flush()


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_is_skipped_and_the_groups_other_members_still_get_the_event():
    """The sender pushes to a group's members itself (one round trip): with channels-redis's rules,
    a member whose queue is at capacity does not get the message, the others do."""
    ws = uuid.uuid4()
    full, free = _subscribe(workspace_group(ws)), _subscribe(workspace_group(ws))
    layer = _layer()

    async def fill() -> None:
        for i in range(layer.get_capacity(full)):
            await layer.send(full, {"type": "filler", "i": i})

    async_to_sync(fill)()
    queue_key = layer.prefix + full
    assert _redis().zcard(queue_key) == layer.get_capacity(full)
    with transaction.atomic():
        publish(workspace_id=ws, type="flow_run.created", data={"id": "x"})
    _flush_sender()
    got = _receive(free)
    assert got is not None and got["event"]["type"] == "flow_run.created"
    assert _redis().zcard(queue_key) == layer.get_capacity(full)  # nothing added to the full one
    assert _receive(full)["type"] == "filler"
    # The drop is marked for the full queue's reader (its live hub), and only for it.
    assert _redis().get(overflow_marker(queue_key)) == b"1"
    assert 0 < _redis().ttl(overflow_marker(queue_key)) <= layer.expiry
    assert _redis().get(overflow_marker(layer.prefix + free)) is None


@pytest.mark.django_db(transaction=True)
def test_an_expired_member_is_dropped_from_the_group_and_gets_nothing():
    """A membership older than the layer's group expiry (its process gone a day ago) is removed
    before the push, as channels-redis's group_send removes it."""
    ws = uuid.uuid4()
    stale, live = _subscribe(workspace_group(ws)), _subscribe(workspace_group(ws))
    layer = _layer()
    group_key = layer._group_key(workspace_group(ws))
    _redis().zadd(group_key, {stale: 1})  # joined in 1970
    with transaction.atomic():
        publish(workspace_id=ws, type="flow_run.created", data={"id": "y"})
    _flush_sender()
    assert _receive(live)["event"]["data"] == {"id": "y"}
    assert _receive(stale, timeout=0.2) is None
    assert [m.decode() for m in _redis().zrange(group_key, 0, -1)] == [live]


@pytest.mark.django_db(transaction=True)
def test_a_layer_on_several_hosts_gets_its_events_through_its_own_group_send(settings):
    """A channels-redis layer on more than one host shards its groups itself, so the sender cannot
    push with its blocking client: it sends through the layer's asyncio ``group_send``, on an event
    loop of the sender's thread, and the events still arrive in order with their seqs."""
    from channels.layers import channel_layers

    import core.events as events

    hosts = [settings.REDIS_URL, settings.REDIS_URL]  # a ring of two; one server is enough to shard
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": hosts, "prefix": "fd2"}}
    }
    channel_layers.backends.pop("default", None)

    def ring():
        from channels_redis.core import RedisChannelLayer

        return RedisChannelLayer(hosts=hosts, prefix="fd2")

    try:
        assert not events._direct(channel_layers["default"], get_event_log())
        ws = uuid.uuid4()
        channel = f"test-events.{uuid.uuid4().hex}"

        async def join():
            await ring().group_add(workspace_group(ws), channel)

        async_to_sync(join)()
        for n in range(3):
            with transaction.atomic():
                publish(workspace_id=ws, type="flow_run.created", data={"n": n})
        _flush_sender()

        async def three():
            layer = ring()
            return [await asyncio.wait_for(layer.receive(channel), 2) for _ in range(3)]

        got = async_to_sync(three)()
        assert [m["event"]["data"]["n"] for m in got] == [0, 1, 2]
        assert got[0]["seq"] < got[1]["seq"] < got[2]["seq"]
        assert events._sender._event_loop is not None  # made for this layer
    finally:
        channel_layers.backends.pop("default", None)
