"""Log floods, per socket and run: ``logs.appended`` events are coalesced into at most one message
per :data:`WINDOW_SECONDS`, and lines beyond :data:`LINES_PER_SECOND` (a token bucket with one
second of burst) are not announced; the client gets a ``logs_dropped`` marker with how many lines
it was not told about, and reloads to see all."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

WINDOW_SECONDS = float(os.environ.get("FLOWDECK_LIVE_LOG_WINDOW_SECONDS", "0.25"))
LINES_PER_SECOND = float(os.environ.get("FLOWDECK_LIVE_LOG_LINES_PER_SECOND", "2000"))
DROPPED_MESSAGE = "Lines dropped; reload to see all."


@dataclass
class _RunLogs:
    tokens: float = LINES_PER_SECOND
    refilled: float = field(default_factory=time.monotonic)
    last_flush: float = 0.0
    pending: dict[str, Any] | None = None  # {"seq", "event"} merged
    merged: int = 0
    dropped: int = 0
    flush_scheduled: bool = False


class LogGate:
    """Decides, for one socket, which log notifications go out and when."""

    def __init__(self) -> None:
        self._runs: dict[str, _RunLogs] = {}

    def forget(self, flow_run_id: str) -> None:
        self._runs.pop(flow_run_id, None)

    def offer(self, flow_run_id: str, seq: int, event: dict[str, Any]) -> float | None:
        """Take one ``logs.appended`` event; return how long until :meth:`flush` should run (0 for
        now), or None when a flush is already scheduled."""
        state = self._runs.setdefault(flow_run_id, _RunLogs())
        now = time.monotonic()
        state.tokens = min(LINES_PER_SECOND, state.tokens + (now - state.refilled) * LINES_PER_SECOND)
        state.refilled = now
        data = event.get("data") or {}
        count = int(data.get("count") or 0)
        if count <= state.tokens:
            state.tokens -= count
            self._merge(state, seq, event, data, count)
        else:
            state.dropped += count
        if state.flush_scheduled:
            return None
        state.flush_scheduled = True
        return max(0.0, state.last_flush + WINDOW_SECONDS - now)

    @staticmethod
    def _merge(state: _RunLogs, seq: int, event: dict[str, Any], data: dict[str, Any], count: int) -> None:
        if state.pending is None:
            state.pending = {"seq": seq, "event": {**event, "data": dict(data)}}
            state.merged = 1
            return
        merged = state.pending["event"]["data"]
        merged["count"] = int(merged.get("count") or 0) + count
        for key, pick in (("first_sequence", min), ("last_sequence", max)):
            values = [v for v in (merged.get(key), data.get(key)) if isinstance(v, int)]
            if values:
                merged[key] = pick(values)
        state.merged += 1
        merged["coalesced"] = state.merged
        state.pending["seq"] = max(state.pending["seq"], seq)
        state.pending["event"]["at"] = event.get("at")

    def flush(self, flow_run_id: str) -> list[dict[str, Any]]:
        """The messages to send now for ``flow_run_id``: the merged event, then the marker."""
        state = self._runs.get(flow_run_id)
        if state is None:
            return []
        out: list[dict[str, Any]] = []
        if state.pending is not None:
            out.append({"type": "event", "seq": state.pending["seq"], "event": state.pending["event"]})
        if state.dropped:
            out.append({"type": "logs_dropped", "flow_run_id": flow_run_id, "count": state.dropped,
                        "message": DROPPED_MESSAGE})
        state.pending, state.merged, state.dropped = None, 0, 0
        state.flush_scheduled = False
        state.last_flush = time.monotonic()
        return out
