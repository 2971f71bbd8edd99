"""Publishing events after commit (E2, G3 in docs/reliability.md; protocol in docs/live-updates.md).

Every state change, run creation, agent status change and log batch calls :func:`publish`. The
event is sent only once the transaction commits (``transaction.on_commit``), so a rolled-back change
is never announced, to one channel-layer group, so a subscriber only ever hears about its own
workspace: events about the workspace's objects (runs created, flow-run states, agents …) go to the
workspace's group; what happens *inside* one flow run (task-run states, log lines) goes to that
run's group only, heard by whoever is looking at the run, so busy runs never flood dashboards and
each event costs one send.

Each event gets a per-workspace ``seq`` and is kept in a bounded replay store
(:mod:`core.event_log`) before it is sent, as ``{"type": "flowdeck.event", "seq", "event",
"flow_run_id"}``; a socket that reconnects with the last seq it saw gets what it missed.

A channel layer or Redis that is down loses the live event but never fails or delays the write
that caused it (G3): events to Redis go through a background sender, which stores a whole batch
in one pipelined round trip and then sends it; clients fill gaps from REST.

:func:`send_after_commit` sends other messages (agent pushes, socket-closing control messages) the
same way, without a seq: they are not part of the workspace's event history. Every message names
its ``group``: each server process receives a group's messages once and fans them out to its own
sockets (``core.live.hub``).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from django.utils import timezone

from core.event_log import MemoryEventLog, RedisEventLog, event_log_for

logger = logging.getLogger(__name__)


def workspace_group(workspace_id: Any) -> str:
    return f"ws.{workspace_id}"


def flow_run_group(flow_run_id: Any) -> str:
    return f"run.{flow_run_id}"


def publish(*, workspace_id: Any, type: str, data: dict[str, Any], flow_run_id: Any = None) -> None:
    """Send ``{"type": type, "workspace_id", "data", "at"}`` after the current transaction commits:
    to the subscribers of flow run ``flow_run_id`` when given (events inside a run), otherwise to the
    workspace's subscribers."""
    event = {"type": type, "workspace_id": str(workspace_id), "data": data, "at": timezone.now().isoformat()}
    groups = [workspace_group(workspace_id) if flow_run_id is None else flow_run_group(flow_run_id)]
    transaction.on_commit(lambda: _send(groups, event))


def send_after_commit(group: str, message: dict[str, Any]) -> None:
    """Send a channel-layer ``message`` (its ``type`` names the consumer handler) to ``group``
    after the current transaction commits, with the same guarantees as :func:`publish`."""
    transaction.on_commit(lambda: _deliver(_Item(group=group, message=message)))


@dataclass
class _Item:
    group: str
    # A workspace event (gets a seq and is stored for replay) …
    event: dict[str, Any] | None = None
    workspace_id: str = ""
    run: str | None = None
    # … or a plain message.
    message: dict[str, Any] | None = None

    def envelope(self, seq: int) -> dict[str, Any]:
        # ``group`` tells a process's live hub (core.live.hub) which of its sockets it is for.
        return {"type": "flowdeck.event", "seq": seq, "event": self.event, "flow_run_id": self.run, "group": self.group}

    def plain(self) -> dict[str, Any]:
        return {**(self.message or {}), "group": self.group}

    @property
    def label(self) -> str:
        return str((self.event or self.message or {}).get("type"))


def _send(groups: list[str], event: dict[str, Any]) -> None:
    """Called on commit for an event (tests replace it to capture what is published)."""
    for group in groups:
        run = group.removeprefix("run.") if group.startswith("run.") else None
        _deliver(_Item(group=group, event=event, workspace_id=event["workspace_id"], run=run))


_server_loop: asyncio.AbstractEventLoop | None = None


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the server's event loop (the live hub calls this when it starts): in embedded mode,
    events published from other threads are handed to it."""
    global _server_loop
    _server_loop = loop


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _deliver(item: _Item) -> None:
    """Called on commit. An in-memory layer (embedded mode) is sent to directly, on the server's own
    event loop; any other layer goes through the background sender, so a write never waits for
    Redis (or hangs when it is down) and the connection pool lives on one long-running loop."""
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        try:
            if item.message is not None:
                message = item.plain()
            else:
                log = event_log_for(layer)
                assert isinstance(log, MemoryEventLog)
                message = item.envelope(log.append(item.workspace_id, item.event or {}, item.run))
            loop = _server_loop
            if loop is not None and loop.is_running() and not _running_on(loop):
                # From another thread (the embedded periodic loop, a worker thread): the in-memory
                # layer's queues belong to the server's loop, so the send must run there.
                asyncio.run_coroutine_threadsafe(layer.group_send(item.group, message), loop)
            else:
                async_to_sync(layer.group_send)(item.group, message)
        except Exception:  # noqa: BLE001 - never fail the write (G3)
            logger.warning("could not publish %s to %s", item.label, item.group, exc_info=True)
        return
    _sender.submit(layer, item)


class _BackgroundSender:
    """One daemon thread per process, sending queued events in order with the event log's blocking
    Redis client (an event loop costs about three times the CPU per round trip; one is made only
    for a layer that must be reached through its own asyncio API). The queue is bounded: if the
    channel layer cannot keep up (or is down), newer events are dropped with a warning rather than
    growing memory; clients fill gaps from REST."""

    MAX_QUEUED = 10_000
    BATCH = 500

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Any, _Item]] = queue.Queue(self.MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._event_loop: asyncio.AbstractEventLoop | None = None

    def submit(self, layer: Any, item: _Item) -> None:
        self._ensure_running()
        try:
            self._queue.put_nowait((layer, item))
        except queue.Full:
            logger.warning("event queue full; dropped %s", item.label)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was sent (tests, graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    def _ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="flowdeck-events", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Whatever queued meanwhile goes out in the same pass, still in order.
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._send_batch(batch)
            except Exception:  # noqa: BLE001 - the thread must survive anything
                logger.warning("could not send a batch of %d events", len(batch), exc_info=True)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _send_batch(self, batch: list[tuple[Any, _Item]]) -> None:
        seqs, members = _store_and_look_up(batch)
        for layer, item in batch:
            if item.message is not None:
                message = item.plain()
            elif id(item) in seqs:
                message = item.envelope(seqs[id(item)])
            else:
                continue  # no seq (the store is down): the layer most likely is too; clients reload
            try:
                channels = members.get((id(layer), item.group))
                if channels is None:
                    self._loop().run_until_complete(_group_send(layer, item.group, message))
                elif channels:
                    _push(layer, channels, message)
                # else: no process listens to that group; nothing to send
            except Exception:  # noqa: BLE001 - keep sending the next ones
                logger.warning("could not publish %s to %s", item.label, item.group, exc_info=True)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """The sender thread's event loop, for layers it cannot reach with its blocking Redis
        client (:func:`_direct`): made the first time one needs it."""
        if self._event_loop is None:
            self._event_loop = _new_loop()
            asyncio.set_event_loop(self._event_loop)
        return self._event_loop


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's when installed (as the server's): its loop costs the sender less CPU per round trip."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a requirement of the server
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _group_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    await _attempt(lambda: layer.group_send(group, message))


def _direct(layer: Any, log: Any) -> bool:
    """Whether the sender may read ``layer``'s groups from ``log``'s Redis and push to their
    members itself, with the log's blocking client: a channels-redis layer on one Redis host (the
    log's)."""
    from channels_redis.core import RedisChannelLayer

    return isinstance(layer, RedisChannelLayer) and layer.ring_size == 1 and isinstance(log, RedisEventLog)


def _store_and_look_up(
    batch: list[tuple[Any, _Item]],
) -> tuple[dict[int, int], dict[tuple[int, str], list[str]]]:
    """Store the batch's events and learn who listens, in one pipelined round trip per store
    (normally one Redis): the events' seqs by ``id(item)``, and the member channels of each group
    the batch goes to by ``(id(layer), group)`` where the layer allows it (:func:`_direct`; the
    other groups are sent through the layer's own ``group_send``). Sending each event by itself
    afterwards keeps the pace at which they reach each process's hub (core.live.hub)."""
    by_log: dict[int, tuple[RedisEventLog, list[_Item], dict[str, tuple[Any, str]]]] = {}
    no_log: list[_Item] = []
    for layer, item in batch:
        log = event_log_for(layer)
        if isinstance(log, RedisEventLog):
            _, items, groups = by_log.setdefault(id(log), (log, [], {}))
            if item.event is not None:
                items.append(item)
            if _direct(layer, log):
                groups[layer._group_key(item.group).decode()] = (layer, item.group)
        elif item.event is not None:
            no_log.append(item)
    # A layer without a store we know (sentinels …) still delivers, with seq 0: no replay.
    seqs: dict[int, int] = {id(item): 0 for item in no_log}
    members: dict[tuple[int, str], list[str]] = {}
    for log, items, groups in by_log.values():
        expired_before = int(time.time()) - max((layer.group_expiry for layer, _ in groups.values()), default=0)
        try:
            # Not tried twice here: the store's client already retries a broken connection once, and
            # a second try of a batch that did arrive would store its events twice.
            assigned, found = log.append_and_read_groups_blocking(
                [(i.workspace_id, i.event or {}, i.run) for i in items], list(groups), expired_before)
        except Exception:  # noqa: BLE001 - Redis down: live updates degrade, writes do not (G3)
            logger.warning("could not store %d events for replay", len(items), exc_info=True)
            continue
        seqs.update({id(item): seq for item, seq in zip(items, assigned, strict=True)})
        members.update({(id(layer), group): found[key] for key, (layer, group) in groups.items()})
    return seqs, members


def overflow_marker(channel_key: str) -> str:
    """The Redis key that says a message to the queue ``channel_key`` was dropped because the queue
    was full. The process reading that queue (its live hub) takes the marker and tells its sockets
    that events were lost, as after a Redis outage: dropping is bounded memory, never silent."""
    return channel_key + ":overflowed"


# One channel-layer message to many channels' queues, as channels-redis's group_send stores it
# (expired messages dropped, a full queue skipped and marked with overflow_marker), in one round
# trip instead of two.
# KEYS: the channels' queues; ARGV: their messages, their capacities, now, expiry (s), expired before.
_PUSH = """
local n = #KEYS
local now, expiry, before = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local full = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, before)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        redis.call('SET', KEYS[i] .. '""" + overflow_marker("") + """', '1', 'EX', expiry)
        full = full + 1
    end
end
return full
"""


def _push(layer: Any, channels: list[str], message: dict[str, Any]) -> None:
    """``message`` to the queues of ``channels`` (a group's members) of a channels-redis layer on
    one Redis host (:func:`_direct`), serialized by the layer itself, sent with the event log's
    blocking client to that host."""
    log = event_log_for(layer)
    assert isinstance(log, RedisEventLog)
    by_host, payloads, capacities = layer._map_channel_keys_to_connection(channels, message)
    for keys in by_host.values():
        now = time.time()
        args = [*(payloads[k] for k in keys), *(capacities[k] for k in keys), now, layer.expiry,
                int(now) - int(layer.expiry)]
        full = log.blocking_client().eval(_PUSH, len(keys), *keys, *args)
        if full:
            # Info, not warning: a burst drops many; the hub reading the queue warns once.
            logger.info("%s of %s channels over capacity; message dropped", full, len(keys))


async def _attempt(call: Any) -> Any:
    """``await call()``, once more if it fails: after Redis restarts, each pooled connection fails
    once ("closed by server") before it is replaced, and the first events after an outage must
    not be lost to that."""
    try:
        return await call()
    except Exception:  # noqa: BLE001 - tried once more below
        return await call()


_sender = _BackgroundSender()
