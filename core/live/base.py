"""What both live sockets share: group membership through the process's hub, a bounded inbox and
send queue (E3), closing with a code, JSON in and out.

Group messages reach a socket through :mod:`core.live.hub`, which puts them in the socket's inbox
without waiting; an inbox task handles them one at a time (under the socket's lock, so they never
interleave with a client's ``subscribe_run``). Handlers never write to the socket themselves: they
put the message on the send queue and a writer task sends it. A client that stops reading makes the
server's write buffer fill, the writer then waits, the queues fill, and the socket is closed with
4008 — the producer (the hub, every other socket) never waits for it and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from .hub import get_hub

logger = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# Messages waiting for one socket before it counts as not reading.
SEND_QUEUE_SIZE = _env_int("FLOWDECK_LIVE_SEND_QUEUE", 1000)
# How often a socket re-checks that its credentials still grant access (a missed control message,
# a deactivated user, a key past its rotation grace).
REVALIDATE_SECONDS = _env_int("FLOWDECK_LIVE_REVALIDATE_SECONDS", 60)
# How long a close may wait for a client's full buffer before the connection is dropped.
CLOSE_TIMEOUT_SECONDS = 30
MAX_CLIENT_MESSAGE = 4096

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4008


class LiveConsumer(AsyncWebsocketConsumer):
    # No channel of the socket's own: group messages come through the process's hub. A channel per
    # socket would also be read by Channels in a loop that ends the socket (or fails its handshake
    # with HTTP 500) whenever Redis cannot be reached.
    channel_layer_alias = "flowdeck.live.hub-only"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups: list[str] = []
        self.lock = asyncio.Lock()
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SEND_QUEUE_SIZE)
        self._queue: asyncio.Queue[str] = asyncio.Queue(SEND_QUEUE_SIZE)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer: asyncio.Task[Any] | None = None
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------------------

    async def refuse(self, code: int) -> None:
        """Close with a code the client can read (a close before accept is a bare HTTP 403)."""
        self._closing = True
        await self.accept()
        await self.close(code)

    async def join(self, *groups: str) -> None:
        for group in groups:
            if group not in self.groups:
                self.groups.append(group)
                await get_hub().join(group, self)

    async def leave(self, group: str) -> None:
        if group in self.groups:
            self.groups.remove(group)
            await get_hub().leave(group, self)

    async def _leave_all(self) -> None:
        for group in list(self.groups):
            with contextlib.suppress(Exception):
                await self.leave(group)

    def start(self) -> None:
        """After accept: start the writer and the periodic access re-check."""
        self._writer = asyncio.create_task(self._write())
        self.spawn(self._revalidate_forever())

    def start_inbox(self) -> None:
        """Once connected (hello sent): handle the group messages that arrived meanwhile, then live."""
        self.spawn(self._read_inbox())

    def deliver(self, message: dict[str, Any]) -> None:
        """Called by the hub for every group message of this socket; never waits."""
        if self._closing:
            return
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            logger.info("live socket not keeping up (%d in inbox); closing with 4008", self._inbox.qsize())
            self.spawn(self.shut(CLOSE_TOO_SLOW))

    async def _read_inbox(self) -> None:
        while not self._closing:
            message = await self._inbox.get()
            handler = getattr(self, str(message.get("type", "")).replace(".", "_"), None)
            if handler is None or not str(message.get("type", "")).startswith("flowdeck."):
                continue
            async with self.lock:
                try:
                    await handler(message)
                except StopConsumer:
                    raise
                except Exception:  # noqa: BLE001 - a database blip loses this message, not the socket's inbox
                    logger.warning("live socket could not handle %s", message.get("type"), exc_info=True)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        async def run() -> None:
            with contextlib.suppress(StopConsumer):  # shut() from a side task: the socket is closed
                await coro

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self._leave_all()
        await super().websocket_disconnect(message)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        for task in [*self._tasks, *([self._writer] if self._writer else [])]:
            if task is not asyncio.current_task():
                task.cancel()

    async def shut(self, code: int) -> None:
        """Close with ``code``; if the client's buffer is full the close waits for it at most
        :data:`CLOSE_TIMEOUT_SECONDS`, then the consumer stops (the connection is dropped)."""
        if self._closing:
            return
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
        try:
            await asyncio.wait_for(self.close(code), CLOSE_TIMEOUT_SECONDS)
        except (TimeoutError, Exception):  # noqa: BLE001 - the client is gone or stuck: stop anyway
            await self._leave_all()
            await self.disconnect(code)
            raise StopConsumer() from None

    # --- sending ---------------------------------------------------------------------------------

    async def push(self, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for the client; a full queue closes the socket with 4008."""
        await self.push_text(json.dumps(payload, separators=(",", ":")))

    async def push_text(self, text: str) -> None:
        if self._closing:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            logger.info("live socket not reading (%d queued); closing with 4008", self._queue.qsize())
            await self.shut(CLOSE_TOO_SLOW)

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            try:
                await self.send(text_data=text)
            except Exception:  # noqa: BLE001 - the connection went away; the disconnect handler cleans up
                return

    # --- receiving -------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing:
            return
        if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
            await self.push({"type": "error", "code": "bad_request",
                             "message": f"Send JSON text messages of at most {MAX_CLIENT_MESSAGE} bytes."})
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("action"), str):
            await self.push({"type": "error", "code": "bad_request",
                             "message": 'Send a JSON object with an "action", e.g. {"action": "ping"}.'})
            return
        async with self.lock:
            await self.act(message["action"], message)

    async def act(self, action: str, message: dict[str, Any]) -> None:
        if action == "ping":
            await self.push({"type": "pong"})
            return
        await self.push({"type": "error", "code": "unknown_action", "message": f"Unknown action '{action[:50]}'."})

    # --- access ----------------------------------------------------------------------------------

    async def still_allowed(self) -> bool:
        return True

    async def _revalidate_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(REVALIDATE_SECONDS)
            try:
                allowed = await self.still_allowed()
            except Exception:  # noqa: BLE001 - a database blip is not a revocation
                logger.warning("could not re-check a live socket's access", exc_info=True)
                continue
            if not allowed:
                await self.shut(CLOSE_FORBIDDEN)
                return

    async def flowdeck_resync(self, message: dict[str, Any]) -> None:
        """The hub re-joined its groups after Redis was lost: messages may have been lost meanwhile."""

    async def flowdeck_control(self, message: dict[str, Any]) -> None:
        """Access ended (member removed, key revoked, logged out): close with the given code."""
        await self.shut(int(message.get("code") or CLOSE_FORBIDDEN))
