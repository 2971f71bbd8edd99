"""One channel-layer subscription per process, fanned out to the process's sockets.

With a channel per socket, channels-redis delivers a workspace event with one Redis pop per socket
(100 sockets → 100 round trips per event) and every socket encodes the same JSON again. Instead,
each server process has one hub channel: it joins a group when the first local socket needs it and
leaves when the last one goes, receives each message once, encodes an event once, and hands it to
the local sockets in memory (non-blocking: each socket has a bounded inbox, E3).

Every message sent to a group carries its ``group`` (``core.events``), so the hub knows whom it is for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any, Protocol

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# channels-redis forgets group members after a day (group_expiry): the hub re-joins well before.
REFRESH_SECONDS = 3600


class Member(Protocol):
    def deliver(self, message: dict[str, Any]) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.members: dict[str, set[Member]] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []

    async def _ensure_started(self) -> str:
        if self.channel is None:
            # The default "specific." prefix: channels-redis serves all of a process's channels with
            # one receive loop per prefix, and the sockets' own channels use this one.
            self.channel = await self.layer.new_channel()
            self._tasks = [asyncio.create_task(self._receive_forever()), asyncio.create_task(self._refresh_forever())]
        return self.channel

    async def join(self, group: str, member: Member) -> None:
        async with self._lock:  # joins and leaves reach Redis in the order they happen here
            channel = await self._ensure_started()
            members = self.members.setdefault(group, set())
            members.add(member)
            if len(members) == 1:
                await self.layer.group_add(group, channel)

    async def leave(self, group: str, member: Member) -> None:
        async with self._lock:
            members = self.members.get(group)
            if members is None or member not in members:
                return
            members.discard(member)
            if not members:
                del self.members[group]
                if self.channel is not None:
                    await self.layer.group_discard(group, self.channel)

    async def _receive_forever(self) -> None:
        assert self.channel is not None
        failures = 0
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis down: retry, then re-join (it may have restarted empty)
                failures += 1
                logger.warning("live hub cannot receive (attempt %d)", failures, exc_info=failures == 1)
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
                continue
            if failures:
                failures = 0
                await self._rejoin()
            self.dispatch(message)

    def dispatch(self, message: dict[str, Any]) -> None:
        members = self.members.get(str(message.get("group")))
        if not members:
            return
        if message.get("type") == "flowdeck.event":
            # Encoded once for every local socket that forwards it unchanged.
            message["text"] = json.dumps({"type": "event", "seq": message.get("seq"), "event": message.get("event")},
                                         separators=(",", ":"))
        for member in list(members):
            member.deliver(message)

    async def _rejoin(self) -> None:
        async with self._lock:
            for group in list(self.members):
                try:
                    await self.layer.group_add(group, self.channel)
                except Exception:  # noqa: BLE001 - the next failure retries
                    logger.warning("live hub could not re-join %s", group)
                    return

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self._rejoin()


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
