"""Publishing events after commit (DESIGN.md §5).

Every state change, run creation, agent status change and log batch calls :func:`publish`. The
event is sent only once the transaction commits (``transaction.on_commit``), to the channel-layer
group of its workspace (and, when given, of one flow run), so a rolled-back change is never
announced and a subscriber only ever hears about its own workspace. A channel layer that is down
(Redis stopped) loses the live event but never fails the write that caused it (G3): clients fill
gaps from REST.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


def workspace_group(workspace_id: Any) -> str:
    return f"ws.{workspace_id}"


def flow_run_group(flow_run_id: Any) -> str:
    return f"run.{flow_run_id}"


def publish(*, workspace_id: Any, type: str, data: dict[str, Any], flow_run_id: Any = None) -> None:
    """Send ``{"type": type, "workspace_id", "data", "at"}`` to the workspace's subscribers (and the
    run's, when ``flow_run_id`` is given) after the current transaction commits."""
    event = {"type": type, "workspace_id": str(workspace_id), "data": data, "at": timezone.now().isoformat()}
    groups = [workspace_group(workspace_id)]
    if flow_run_id is not None:
        groups.append(flow_run_group(flow_run_id))
    transaction.on_commit(lambda: _send(groups, event))


def _send(groups: list[str], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        # One hop into the event loop for every group: each async_to_sync costs milliseconds.
        async_to_sync(_send_all)(layer, groups, {"type": "flowdeck.event", "event": event})
    except Exception:  # noqa: BLE001 - a down channel layer must not fail the write (G3)
        logger.warning("could not publish %s to %s", event["type"], groups, exc_info=True)


async def _send_all(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    await asyncio.gather(*(layer.group_send(group, message) for group in groups))
