"""Publishing events after commit (DESIGN.md §5).

Every state change, run creation, agent status change and log batch calls :func:`publish`. The
event is sent only once the transaction commits (``transaction.on_commit``), so a rolled-back change
is never announced, to one channel-layer group, so a subscriber only ever hears about its own
workspace: events about the workspace's objects (runs created, flow-run states, agents …) go to the
workspace's group; what happens *inside* one flow run (task-run states, log lines) goes to that
run's group only, heard by whoever is looking at the run, so busy runs never flood dashboards and
each event costs one send. A channel layer that is down
(Redis stopped) loses the live event but never fails or delays the write that caused it (G3):
events to Redis go through a background sender; clients fill gaps from REST.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from django.utils import timezone

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


def _send(groups: list[str], event: dict[str, Any]) -> None:
    """Called on commit. An in-memory layer (embedded mode) is sent to directly, on the server's own
    event loop; any other layer goes through the background sender, so a write never waits for
    Redis (or hangs when it is down) and the connection pool lives on one long-running loop."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "flowdeck.event", "event": event}
    if isinstance(layer, InMemoryChannelLayer):
        try:
            async_to_sync(_send_all)(layer, groups, message)
        except Exception:  # noqa: BLE001 - never fail the write (G3)
            logger.warning("could not publish %s to %s", event["type"], groups, exc_info=True)
        return
    _sender.submit(layer, groups, message)


async def _send_all(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    await asyncio.gather(*(layer.group_send(group, message) for group in groups))


class _BackgroundSender:
    """One daemon thread per process with its own event loop, sending queued events in order. The
    queue is bounded: if the channel layer cannot keep up (or is down), newer events are dropped
    with a warning rather than growing memory; clients fill gaps from REST."""

    MAX_QUEUED = 10_000
    BATCH = 500

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Any, list[str], dict[str, Any]]] = queue.Queue(self.MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, layer: Any, groups: list[str], message: dict[str, Any]) -> None:
        self._ensure_running()
        try:
            self._queue.put_nowait((layer, groups, message))
        except queue.Full:
            logger.warning("event queue full; dropped %s", message["event"]["type"])

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
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        while True:
            batch = [self._queue.get()]
            # Whatever queued meanwhile goes out in the same pass of the loop, still in order.
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                loop.run_until_complete(self._send_batch(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    @staticmethod
    async def _send_batch(batch: list[tuple[Any, list[str], dict[str, Any]]]) -> None:
        for layer, groups, message in batch:
            try:
                await _send_all(layer, groups, message)
            except Exception:  # noqa: BLE001 - keep sending the next ones
                logger.warning("could not publish %s to %s", message["event"]["type"], groups, exc_info=True)


_sender = _BackgroundSender()
