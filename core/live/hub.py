"""One channel-layer subscription per process, fanned out to the process's sockets.

With a channel per socket, channels-redis delivers a workspace event with one Redis pop per socket
(100 sockets → 100 round trips per event) and every socket encodes the same JSON again. Instead,
each server process has one hub channel: it joins a group when the first local socket needs it and
leaves when the last one goes, receives each message once, encodes an event once, and hands it to
the local sockets in memory (non-blocking: each socket has a bounded inbox, E3).

Every message sent to a group carries its ``group`` (``core.events``), so the hub knows whom it is for.

Group memberships live in Redis, so Redis going away (or restarting empty, or being flushed) loses
them while the sockets stay connected. The hub repairs that by itself (G3): a watcher keeps a
sentinel key next to the memberships and checks it every :data:`CHECK_SECONDS` (every
:data:`PROBE_SECONDS` while Redis is unreachable); when Redis answers again, or answers without the
sentinel (flushed), the hub re-adds every group it has members for. After an outage it also tells
its sockets that events may have been lost (``flowdeck.resync``: browsers get ``gap``, agents the
work waiting for them). Nothing in the hub waits for Redis to be up: a join that cannot reach it is
repaired by the watcher.

The hub's queue in Redis is bounded (the layer's ``capacity``): a burst that outruns the receive
loop beyond it is dropped rather than filling Redis. The sender then leaves a marker
(``core.events.overflow_marker``), and the watcher, finding it, tells the sockets to resync too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

from channels.layers import get_channel_layer

from core.event_log import event_log_for

logger = logging.getLogger(__name__)

# channels-redis forgets group members after a day (group_expiry): the hub re-joins well before.
REFRESH_SECONDS = 3600
# How often a healthy hub checks that Redis still holds its memberships (one EXPIRE per Redis host),
# and how often a hub that cannot reach Redis tries again.
CHECK_SECONDS = 2.0
PROBE_SECONDS = 1.0
# The sentinel outlives many checks, and disappears soon after its process is gone.
SENTINEL_TTL_SECONDS = 60
# After Redis restarts, each pooled connection fails once ("closed by server") before it is replaced.
ATTEMPTS = 2

T = TypeVar("T")


async def _attempt(op: Callable[[], Awaitable[T]]) -> T:
    """``op()``, tried again at once when it fails: a stale connection is replaced after one failure."""
    for _ in range(ATTEMPTS - 1):
        try:
            return await op()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the last attempt raises
            logger.debug("live hub: a Redis call failed; trying again", exc_info=True)
    return await op()


class Member(Protocol):
    def deliver(self, message: dict[str, Any]) -> None: ...


class Hub:
    def __init__(self, layer: Any = None) -> None:
        self.layer = layer if layer is not None else get_channel_layer()
        self.log = event_log_for(self.layer)
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        # False once a join, a receive or a check failed: Redis may have lost our memberships.
        self.healthy = True
        self.resyncs = 0  # times the hub re-joined after Redis was lost (logs, tests)
        self.overflows = 0  # times it found messages to it dropped from its full queue (logs, tests)
        self._joined_at = time.monotonic()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []

    async def _ensure_started(self) -> str:
        if self.channel is None:
            # The default "specific." prefix: channels-redis serves all of a process's channels with
            # one receive loop per prefix.
            self.channel = await self.layer.new_channel()
            self._tasks = [asyncio.create_task(self._receive_forever()), asyncio.create_task(self._watch_forever())]
        return self.channel

    async def join(self, group: str, member: Member) -> None:
        async with self._lock:  # joins and leaves reach Redis in the order they happen here
            channel = await self._ensure_started()
            members = self.members.setdefault(group, set())
            members.add(member)
            # While Redis is known to be away, the handshake does not wait for it: the watcher adds
            # the group with all the others when Redis answers.
            if len(members) == 1 and self.healthy:
                try:
                    await _attempt(partial(self.layer.group_add, group, channel))
                except Exception:  # noqa: BLE001 - Redis down: the socket still connects; the watcher re-adds
                    self._lost("cannot join %s", group)

    async def leave(self, group: str, member: Member) -> None:
        async with self._lock:
            members = self.members.get(group)
            if members is None or member not in members:
                return
            members.discard(member)
            if not members:
                del self.members[group]
                if self.channel is not None:
                    # Redis down: the membership stays there until it expires; messages for a group
                    # without local members are dropped by dispatch().
                    with contextlib.suppress(Exception):
                        await self.layer.group_discard(group, self.channel)

    def _lost(self, what: str, *args: Any) -> None:
        if self.healthy:
            logger.warning("live hub: " + what + "; live updates resume when Redis answers", *args)
        self.healthy = False

    async def _receive_forever(self) -> None:
        assert self.channel is not None
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis down: keep trying; the watcher repairs the groups
                failures += 1
                self._lost("cannot receive")
                await asyncio.sleep(min(PROBE_SECONDS, 0.05 * 2 ** min(failures, 5)))
                continue
            failures = 0
            self.dispatch(message)

    def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == "flowdeck.event":
            self._observe(message)
        members = self.members.get(str(message.get("group")))
        if not members:
            return
        if message.get("type") == "flowdeck.event":
            # Encoded once for every local socket that forwards it unchanged.
            message["text"] = json.dumps({"type": "event", "seq": message.get("seq"), "event": message.get("event")},
                                         separators=(",", ":"))
        for member in list(members):
            member.deliver(message)

    def _observe(self, message: dict[str, Any]) -> None:
        """A seq this process's sockets may see: numbering never goes below it again (core.event_log)."""
        event = message.get("event")
        seq = message.get("seq")
        if self.log is not None and isinstance(event, dict) and isinstance(seq, int) and seq > 0:
            self.log.observe(str(event.get("workspace_id")), seq)

    # --- keeping the memberships in Redis ----------------------------------------------------------

    def _hosts(self) -> list[Any]:
        """One client per Redis host of the layer (channels-redis); none for other layers."""
        if not hasattr(self.layer, "connection") or not hasattr(self.layer, "ring_size"):
            return []
        return [self.layer.connection(i) for i in range(self.layer.ring_size)]

    def _sentinel(self) -> str:
        return f"{getattr(self.layer, 'prefix', '')}:live:hub:{self.channel}"

    def _overflow_marker(self) -> str:
        from core.events import overflow_marker

        assert self.channel is not None
        return overflow_marker(self.layer.prefix + self.layer.non_local_name(self.channel))

    async def _touch(self, host: Any) -> tuple[bool, bool]:
        """Refresh the sentinel and take the overflow marker in one round trip: (the sentinel was
        there, messages to this hub were dropped since the last check)."""
        async with host.pipeline(transaction=False) as pipe:
            pipe.expire(self._sentinel(), SENTINEL_TTL_SECONDS)
            pipe.delete(self._overflow_marker())
            present, overflowed = await pipe.execute()
        return bool(present), bool(overflowed)

    async def check(self) -> None:
        """Re-join every group when Redis lost them (restart, flush) or the hub could not reach it;
        refresh them before channels-redis's group expiry; tell the sockets to resync when messages
        to this hub were dropped because its queue was full. Never raises."""
        try:
            hosts = self._hosts()
            touched = [await _attempt(partial(self._touch, host)) for host in hosts]
        except Exception:  # noqa: BLE001 - still unreachable
            self._lost("cannot reach Redis")
            return
        present = [p for p, _ in touched]
        overflowed = any(o for _, o in touched)
        if overflowed:
            # A burst outran this hub's receive loop and the queue's capacity: what was dropped is
            # in the event log, and the sockets fetch it (browsers get "gap", agents their work).
            self.overflows += 1
            logger.warning("live hub: messages were dropped from its full queue; told its sockets to resync")
            self._resync()
        if self.healthy and all(present) and time.monotonic() - self._joined_at < REFRESH_SECONDS:
            return
        # Sockets are told only when the hub saw Redis unreachable (a restart always breaks the
        # receive loop's connection). A sentinel gone without that is a flush or an eviction (the
        # test suite flushes before every test): the groups are re-added silently.
        lost = not self.healthy
        if await self._rejoin(hosts) and lost:
            self.resyncs += 1
            logger.warning("live hub: Redis is back; re-joined %d groups", len(self.members))
            if not overflowed:  # once is enough
                self._resync()

    async def _rejoin(self, hosts: list[Any]) -> bool:
        async with self._lock:
            try:
                for group in list(self.members):
                    await _attempt(partial(self.layer.group_add, group, self.channel))
                for host in hosts:  # last: a restart in the middle leaves it missing, and we come back
                    await _attempt(partial(host.set, self._sentinel(), "1", ex=SENTINEL_TTL_SECONDS))
            except Exception:  # noqa: BLE001 - Redis went away again: the next probe retries
                self._lost("could not re-join")
                return False
            self.healthy = True
            self._joined_at = time.monotonic()
            return True

    def _resync(self) -> None:
        """Tell every local socket, once, that events may have been lost meanwhile."""
        sockets = {id(m): m for members in self.members.values() for m in members}
        for member in sockets.values():
            member.deliver({"type": "flowdeck.resync"})

    async def close(self) -> None:
        """Stop receiving and watching (tests; a server process simply exits)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch_forever(self) -> None:
        while True:
            await self.check()  # at once on start: the sentinel then guards the first groups too
            await asyncio.sleep(CHECK_SECONDS if self.healthy else PROBE_SECONDS)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        from core.events import bind_server_loop

        bind_server_loop(loop)
        hub = _hubs[loop] = Hub()
    return hub
