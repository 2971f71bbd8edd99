"""Turning queued reports into the requests that carry them.

The reporter's calling threads only append small tuples to a queue (``TaskItem``, ``LogItem``,
``FlowItem``); the sender thread turns a drained run of them into :class:`Batch` objects here. A
flow state is a barrier: everything queued before it goes out before it, task-run reports of a
stretch before its log lines (so lines can name task runs that now exist).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

BatchKind = Literal["task_runs", "logs", "flow_state"]

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
    payload: Any  # list of reports / list of log lines / one state dict
    idempotency_key: str
    # Reports (by position in ``payload``) whose callers wait for their answers; never spooled.
    waiters: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "idempotency_key": self.idempotency_key, "payload": self.payload}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        kind = data["kind"]
        if kind not in ("task_runs", "logs", "flow_state"):
            raise ValueError(f"unknown batch kind {kind!r}")
        return cls(kind=kind, payload=data["payload"], idempotency_key=str(data["idempotency_key"]))

    def __len__(self) -> int:
        return len(self.payload) if isinstance(self.payload, list) else 1


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
        tag = item[0]
        if tag == "t":
            reports.append(task_report(item))  # type: ignore[arg-type]
        elif tag == "s":
            waiters[len(reports)] = item[7]  # type: ignore[misc]
            reports.append(task_report(item))  # type: ignore[arg-type]
        elif tag == "l":
            lines.append(log_line(item, with_task_keys=log_task_keys))  # type: ignore[arg-type]
        else:
            flush()
            _, state_type, name, message, result_ref = item  # type: ignore[misc]
            batches.append(Batch("flow_state", state_payload(state_type, name, message, result_ref),
                                 str(uuid.uuid4())))
    flush()
    return batches


def split(batch: Batch) -> tuple[Batch, Batch]:
    """Halves of a batch the server found too large (413). Their keys derive from the batch's, so a
    re-send of the same halves after a lost answer is still recognised by the server."""
    middle = len(batch.payload) // 2
    return (Batch(batch.kind, batch.payload[:middle], batch.idempotency_key[:190] + "-a",
                  {i: w for i, w in batch.waiters.items() if i < middle}),
            Batch(batch.kind, batch.payload[middle:], batch.idempotency_key[:190] + "-b",
                  {i - middle: w for i, w in batch.waiters.items() if i >= middle}))
