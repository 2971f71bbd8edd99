"""Turning queued reports into the requests that carry them.

The reporter's calling threads only append small tuples to a queue (``TaskItem``, ``LogItem``,
``FlowItem``); the sender thread turns a drained run of them into :class:`Batch` objects here. A
flow state is a barrier: everything queued before it goes out before it, task-run reports of a
stretch before its log lines (so lines can name task runs that now exist).

A ``report`` batch is one combined request (``flow-runs/{id}/report/``): a stretch's task-run
reports and log lines and the flow state that ends it, with a heartbeat the reporter may add
before the first send. The server applies heartbeat, task runs, logs and state in that order, the
same order as the separate ``task_runs``/``logs``/``flow_state`` batches, which older reporters
spooled and which are still read and sent to their own endpoints.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

BatchKind = Literal["task_runs", "logs", "flow_state", "report"]
BATCH_KINDS = ("task_runs", "logs", "flow_state", "report")

# Field bounds of the server (longer values would fail the whole batch with a 400).
MAX_MESSAGE = 10_000
MAX_STATE_NAME = 32
MAX_RESULT_REF = 1_000
MAX_LOGGER = 200

# Queue items: plain tuples, the cheapest thing to build in the calling thread.
# ("t", task_key, map_index, type, name, message, result_ref)
TaskItem = tuple[Literal["t"], str, int, str, str, Any, str]
# ("l", sequence, levelno, created, logger, message, task_key, map_index)
LogItem = tuple[Literal["l"], int, int, float, str, str, "str | None", "int | None"]
# ("f", type, name, message, result_ref)
FlowItem = tuple[Literal["f"], str, str, Any, str]
# ("s", task_key, map_index, type, name, message, result_ref, waiter): a task-run report whose
# caller waits for the server's answer (RUNNING of a task with limited tags); the waiter is
# whatever the reporter hands back the answer with.
SyncTaskItem = tuple[Literal["s"], str, int, str, str, Any, str, Any]
Item = TaskItem | LogItem | FlowItem | SyncTaskItem


@dataclass
class Batch:
    """One request's worth of reports, with the idempotency key every attempt to send it reuses."""

    kind: BatchKind
    # list of reports / list of log lines / one state dict / for "report" a dict of the parts:
    # "task_runs" (reports), "logs" (lines), "state", "heartbeat" (each only when present)
    payload: Any
    idempotency_key: str
    # Reports (by position in ``payload``, or in a report's task runs) whose callers wait for their
    # answers; never spooled.
    waiters: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)
    # A report sent as its parts to the separate endpoints (a server without the combined one):
    # a re-send must go the same way, where the parts' keys are known.
    separate: bool = False
    # Whether a send was attempted (a heartbeat is added before the first one only, since the
    # key's body must not change between attempts); spooled batches count as attempted.
    attempted: bool = field(default=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "idempotency_key": self.idempotency_key, "payload": self.payload}
        if self.separate:
            data["separate"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        kind = data["kind"]
        if kind not in BATCH_KINDS:
            raise ValueError(f"unknown batch kind {kind!r}")
        return cls(kind=kind, payload=data["payload"], idempotency_key=str(data["idempotency_key"]),
                   separate=bool(data.get("separate")), attempted=True)

    def __len__(self) -> int:
        if self.kind == "report":
            parts = self.payload
            return len(parts.get("task_runs") or ()) + len(parts.get("logs") or ()) + ("state" in parts)
        return len(self.payload) if isinstance(self.payload, list) else 1

    @property
    def state_type(self) -> str | None:
        """The flow state this batch proposes (a ``flow_state`` batch, or a report's state part)."""
        state = self.payload if self.kind == "flow_state" else (
            self.payload.get("state") if self.kind == "report" else None)
        return str(state.get("type")) if isinstance(state, dict) else None


def _text(value: Any, limit: int) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text[:limit]


def state_payload(state_type: str, name: str, message: Any, result_ref: str) -> dict[str, Any]:
    """The server's state object, without empty optional fields (smaller bodies)."""
    state: dict[str, Any] = {"type": state_type}
    if name:
        state["name"] = name[:MAX_STATE_NAME]
    text = _text(message, MAX_MESSAGE)
    if text:
        state["message"] = text
    if result_ref and len(result_ref) <= MAX_RESULT_REF:
        state["result_ref"] = result_ref
    return state


def task_report(item: TaskItem | SyncTaskItem) -> dict[str, Any]:
    _, task_key, map_index, state_type, name, message, result_ref = item[:7]
    return {"task_key": task_key, "map_index": map_index,
            "state": state_payload(state_type, name, message, result_ref)}


def log_line(item: LogItem, *, with_task_keys: bool) -> dict[str, Any]:
    _, sequence, level, created, logger, message, task_key, map_index = item
    line: dict[str, Any] = {
        "sequence": sequence,
        "level": level,
        "timestamp": datetime.fromtimestamp(created, UTC).isoformat(),
        "logger": logger[:MAX_LOGGER],
        "message": message[:MAX_MESSAGE],
    }
    if with_task_keys and task_key is not None:
        line["task_key"] = task_key
        line["map_index"] = -1 if map_index is None else map_index
    return line


def _chunks(kind: BatchKind, payload: list[dict[str, Any]], size: int,
            waiters: dict[int, Any] | None = None) -> list[Batch]:
    batches = []
    for start in range(0, len(payload), size):
        batch = Batch(kind, payload[start:start + size], str(uuid.uuid4()))
        if waiters:
            batch.waiters = {i - start: w for i, w in waiters.items() if start <= i < start + size}
        batches.append(batch)
    return batches


def form_batches(items: list[Item], *, max_task_batch: int, max_log_batch: int,
                 log_task_keys: bool) -> list[Batch]:
    """Batches for ``items`` (in the order they were queued), ready to send in list order."""
    batches: list[Batch] = []
    reports: list[dict[str, Any]] = []
    waiters: dict[int, Any] = {}
    lines: list[dict[str, Any]] = []

    def flush() -> None:
        if reports:
            batches.extend(_chunks("task_runs", reports, max_task_batch, waiters))
            reports.clear()
            waiters.clear()
        if lines:
            batches.extend(_chunks("logs", lines, max_log_batch))
            lines.clear()

    for item in items:
        state = _sort_item(item, reports, waiters, lines, log_task_keys)
        if state is not None:
            flush()
            batches.append(Batch("flow_state", state, str(uuid.uuid4())))
    flush()
    return batches


def _sort_item(item: Item, reports: list[dict[str, Any]], waiters: dict[int, Any], lines: list[dict[str, Any]],
               log_task_keys: bool) -> dict[str, Any] | None:
    """Add a queued task report or log line to its list; a flow state is returned instead."""
    tag = item[0]
    if tag == "t":
        reports.append(task_report(item))  # type: ignore[arg-type]
    elif tag == "s":
        waiters[len(reports)] = item[7]  # type: ignore[misc]
        reports.append(task_report(item))  # type: ignore[arg-type]
    elif tag == "l":
        lines.append(log_line(item, with_task_keys=log_task_keys))  # type: ignore[arg-type]
    else:
        _, state_type, name, message, result_ref = item  # type: ignore[misc]
        return state_payload(state_type, name, message, result_ref)
    return None


def form_reports(items: list[Item], *, max_task_batch: int, max_log_batch: int,
                 log_task_keys: bool = True) -> list[Batch]:
    """Combined ``report`` batches for ``items`` (in the order they were queued), ready to send in
    list order: one per stretch ending with a flow state (or the end of the queue), carrying the
    stretch's task-run reports, its log lines and that state. Only a stretch with more reports or
    lines than one request takes needs more: its task runs first, then its lines, the state last."""
    batches: list[Batch] = []
    reports: list[dict[str, Any]] = []
    waiters: dict[int, Any] = {}
    lines: list[dict[str, Any]] = []

    def flush(state: dict[str, Any] | None) -> None:
        parts: list[dict[str, Any]] = []
        owed: list[dict[int, Any]] = []
        for start in range(0, len(reports), max_task_batch):
            parts.append({"task_runs": reports[start:start + max_task_batch]})
            owed.append({i - start: w for i, w in waiters.items() if start <= i < start + max_task_batch})
        for n, start in enumerate(range(0, len(lines), max_log_batch)):
            chunk = lines[start:start + max_log_batch]
            if n == 0 and parts:
                parts[-1]["logs"] = chunk  # the last task runs' request carries the first lines
            else:
                parts.append({"logs": chunk})
                owed.append({})
        if state is not None:
            if parts:
                parts[-1]["state"] = state
            else:
                parts.append({"state": state})
                owed.append({})
        batches.extend(Batch("report", part, str(uuid.uuid4()), waiting) for part, waiting in zip(parts, owed,
                                                                                               strict=True))
        reports.clear()
        waiters.clear()
        lines.clear()

    for item in items:
        state = _sort_item(item, reports, waiters, lines, log_task_keys)
        if state is not None:
            flush(state)
    if reports or lines:
        flush(None)
    return batches


def _present(**parts: Any) -> dict[str, Any]:
    """The parts that are there (the server refuses an empty list)."""
    return {name: value for name, value in parts.items() if value is not None and value != []}


def _split_report(batch: Batch) -> tuple[Batch, Batch]:
    parts = batch.payload
    reports, lines = list(parts.get("task_runs") or ()), list(parts.get("logs") or ())
    middle = max(1, (len(reports) + len(lines)) // 2)
    cut = max(0, middle - len(reports))
    first = _present(heartbeat=parts.get("heartbeat"), task_runs=reports[:middle], logs=lines[:cut])
    second = _present(task_runs=reports[middle:], logs=lines[cut:], state=parts.get("state"))
    key = batch.idempotency_key[:190]
    return (Batch("report", first, key + "-a", {i: w for i, w in batch.waiters.items() if i < middle},
                  separate=batch.separate, attempted=True),
            Batch("report", second, key + "-b", {i - middle: w for i, w in batch.waiters.items() if i >= middle},
                  separate=batch.separate, attempted=True))


def by_part(batch: Batch) -> list[Batch]:
    """A report's parts as reports of one part each, in the server's order (heartbeat, task runs,
    logs, state), with keys derived from the report's: for a report refused for one of its parts."""
    key = batch.idempotency_key[:190]
    return [Batch("report", {name: batch.payload[name]}, f"{key}-{name[0]}",
                  batch.waiters if name == "task_runs" else {}, separate=batch.separate, attempted=True)
            for name in ("heartbeat", "task_runs", "logs", "state") if name in batch.payload]


def split(batch: Batch) -> tuple[Batch, Batch]:
    """Halves of a batch the server found too large (413). Their keys derive from the batch's, so a
    re-send of the same halves after a lost answer is still recognised by the server. A report's
    first half keeps its heartbeat, the second its flow state."""
    if batch.kind == "report":
        return _split_report(batch)
    middle = len(batch.payload) // 2
    return (Batch(batch.kind, batch.payload[:middle], batch.idempotency_key[:190] + "-a",
                  {i: w for i, w in batch.waiters.items() if i < middle}),
            Batch(batch.kind, batch.payload[middle:], batch.idempotency_key[:190] + "-b",
                  {i - middle: w for i, w in batch.waiters.items() if i >= middle}))
