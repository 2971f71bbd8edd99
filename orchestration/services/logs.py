"""Flow-run logs: batched ingestion from the flow-run process, listing, retention.

Each line carries a per-run ``sequence`` chosen by the sender; (flow run, sequence) is unique, so a
batch re-sent after a lost response inserts nothing twice (D4). Messages and batches are bounded.
A workspace that turned log upload off gets its posts accepted and nothing stored (A3). Logs
expire after their workspace's plan's retention (billing/selectors.py; 7 days without billing).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.authz import Principal, authorize
from accounts.models import Workspace
from billing.selectors import log_retention_by_workspace
from core import rows
from core.errors import InvalidInput
from core.tenancy import rls_bypass, workspace_scope
from core.transactions import atomic_service
from orchestration import events
from orchestration.models import FlowRun, LogEntry, TaskRun

MAX_MESSAGE_LENGTH = 10_000
MAX_BATCH_LINES = 1_000
MAX_LIST_LIMIT = 1_000
MAX_LOGGER_LENGTH = 200
PURGE_CHUNK = 10_000
LEVELS = {"NOTSET": 0, "DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}


def _bad(index: int, field: str, message: str, code: str = "invalid_log_line") -> InvalidInput:
    return InvalidInput(f"Log line {index}: {message}", code=code, details={"lines": {str(index): {field: [message]}}})


def _level(value: Any, index: int) -> int:
    if isinstance(value, bool):
        raise _bad(index, "level", "level is a number 0–100 or a level name.")
    if isinstance(value, int) and 0 <= value <= 100:
        return value
    if isinstance(value, str) and value.upper() in LEVELS:
        return LEVELS[value.upper()]
    raise _bad(index, "level", f"level is a number 0–100 or one of {', '.join(sorted(set(LEVELS)))}.")


def _timestamp(value: Any, index: int) -> datetime:
    parsed = value if isinstance(value, datetime) else parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise _bad(index, "timestamp", "timestamp must be an ISO 8601 date-time.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


def _clean(lines: Any) -> list[dict[str, Any]]:
    if not isinstance(lines, list):
        raise InvalidInput("lines must be a list of log lines.", details={"lines": ["Invalid."]})
    if len(lines) > MAX_BATCH_LINES:
        raise InvalidInput(
            f"A batch holds at most {MAX_BATCH_LINES} log lines (got {len(lines)}); send them in smaller batches.",
            code="log_batch_too_large",
            details={"lines": [f"At most {MAX_BATCH_LINES}."]},
        )
    cleaned: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise _bad(index, "line", "each line is an object.")
        sequence = line.get("sequence")
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise _bad(index, "sequence", "sequence is a non-negative integer.")
        message = line.get("message")
        if not isinstance(message, str):
            raise _bad(index, "message", "message is a string.")
        if len(message) > MAX_MESSAGE_LENGTH:
            raise _bad(
                index, "message", f"message is at most {MAX_MESSAGE_LENGTH} characters (got {len(message)}).",
                code="log_message_too_long",
            )
        logger_name = line.get("logger", "") or ""
        if not isinstance(logger_name, str) or len(logger_name) > MAX_LOGGER_LENGTH:
            raise _bad(index, "logger", f"logger is a string of at most {MAX_LOGGER_LENGTH} characters.")
        task_run_id = line.get("task_run_id")
        if task_run_id is not None:
            try:
                task_run_id = uuid.UUID(str(task_run_id))
            except ValueError:
                raise _bad(index, "task_run_id", "task_run_id is a UUID.") from None
        task_key = line.get("task_key")
        map_index = line.get("map_index", -1)
        if task_key is not None:
            if task_run_id is not None:
                raise _bad(index, "task_key", "Give task_run_id or task_key (+ map_index), not both.")
            if not isinstance(task_key, str) or not 0 < len(task_key) <= 200:
                raise _bad(index, "task_key", "task_key is a task's key of 1–200 characters.")
            if isinstance(map_index, bool) or not isinstance(map_index, int) or map_index < -1:
                raise _bad(index, "map_index", "map_index is -1 (not mapped) or a child's index.")
        cleaned.append({
            "sequence": sequence, "level": _level(line.get("level"), index),
            "timestamp": _timestamp(line.get("timestamp"), index), "logger": logger_name, "message": message,
            "task_run_id": task_run_id, "task": (task_key, map_index) if task_key is not None else None,
        })
    return cleaned


def _resolve_task_keys(workspace_id: Any, flow_run: FlowRun, cleaned: list[dict[str, Any]]) -> None:
    """Turn (task_key, map_index) into the task run's id. A line for a task run the server has
    not heard of yet (its state batch is still on the way) is kept, without the link."""
    wanted = {line["task"] for line in cleaned if line["task"] is not None}
    found: dict[tuple[str, int], Any] = {}
    if wanted:
        rows = (TaskRun.objects.for_workspace(workspace_id)
                .filter(flow_run=flow_run, task_key__in={key for key, _ in wanted})
                .values_list("task_key", "map_index", "pk"))
        found = {(key, index): pk for key, index, pk in rows}
    for line in cleaned:
        task = line.pop("task")
        if task is not None:
            line["task_run_id"] = found.get(task)


@atomic_service
def logs_ingest(*, actor: Principal, flow_run: FlowRun, lines: list[dict]) -> int:
    """Store a batch of log lines of ``flow_run``; returns how many were new. Lines whose sequence
    is already stored are ignored (a re-sent batch is a no-op)."""
    authorize(actor, "log:write", flow_run)
    cleaned = _clean(lines)
    if not cleaned or not _upload_enabled(flow_run.workspace_id):
        return 0  # A3: accepted, nothing stored
    workspace_id = flow_run.workspace_id
    with workspace_scope([workspace_id]):
        # Ids given by the sender must name task runs of this run; ids found from task keys do.
        task_run_ids = {line["task_run_id"] for line in cleaned if line["task_run_id"] is not None}
        if task_run_ids:
            known = set(
                TaskRun.objects.for_workspace(workspace_id)
                .filter(flow_run=flow_run, pk__in=task_run_ids)
                .values_list("pk", flat=True)
            )
            unknown = task_run_ids - known
            if unknown:
                raise InvalidInput(
                    "task_run_id must name a task run of this flow run.",
                    code="unknown_task_run",
                    details={"task_run_id": sorted(str(pk) for pk in unknown)},
                )
        _resolve_task_keys(workspace_id, flow_run, cleaned)
        by_sequence: dict[int, dict[str, Any]] = {}
        for line in cleaned:
            by_sequence.setdefault(line["sequence"], line)
        now = timezone.now()
        if settings.IS_POSTGRES:
            # The unique (run, sequence) skips lines already stored, also those of a concurrent
            # re-send of the same batch (D4); what comes back is what was new.
            fresh = sorted(rows.insert_values(
                LogEntry, [{**line, "workspace_id": workspace_id, "flow_run_id": flow_run.pk, "created_at": now}
                           for _, line in sorted(by_sequence.items())],
                ignore_conflicts=True, returning="sequence"))
        else:
            entries = [LogEntry(workspace_id=workspace_id, flow_run=flow_run, created_at=now, **line)
                       for _, line in sorted(by_sequence.items())]
            stored = set(
                LogEntry.objects.for_workspace(workspace_id)
                .filter(flow_run=flow_run, sequence__in=list(by_sequence))
                .values_list("sequence", flat=True)
            )
            new = [entry for entry in entries if entry.sequence not in stored]
            LogEntry.objects.unscoped().bulk_create(new, ignore_conflicts=True)
            fresh = [entry.sequence for entry in new]
        if not fresh:
            return 0
        events.logs_appended(flow_run, count=len(fresh), first_sequence=fresh[0], last_sequence=fresh[-1])
    return len(fresh)


def _upload_enabled(workspace_id: Any) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "log_upload_enabled" FROM "{Workspace._meta.db_table}" WHERE "id" = %s',  # noqa: S608
                       [Workspace._meta.pk.get_db_prep_value(workspace_id, connection)])
        row = cursor.fetchone()
    return bool(row and row[0])


def logs_list(
    *,
    actor: Principal,
    flow_run: FlowRun,
    level_gte: int | str | None = None,
    task_run_id: Any = None,
    after_sequence: int | None = None,
    search: str | None = None,
    limit: int = 200,
) -> list[LogEntry]:
    """A page of ``flow_run``'s logs in sequence order. The cursor is the last line's sequence:
    pass it back as ``after_sequence`` for the next page."""
    authorize(actor, "log:read", flow_run)
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}.", details={"limit": ["Invalid."]})
    with workspace_scope([flow_run.workspace_id]):
        logs = LogEntry.objects.for_workspace(flow_run.workspace_id).filter(flow_run=flow_run)
        if level_gte is not None:
            logs = logs.filter(level__gte=_level(level_gte, 0))
        if task_run_id is not None:
            logs = logs.filter(task_run_id=task_run_id)
        if after_sequence is not None:
            logs = logs.filter(sequence__gt=after_sequence)
        if search:
            logs = logs.filter(message__icontains=search[:200])
        return list(logs.order_by("sequence")[:limit])


EXPORT_PAGE = 1_000


def logs_export(
    *,
    actor: Principal,
    flow_run: FlowRun,
    level_gte: int | str | None = None,
    task_run_id: Any = None,
    search: str | None = None,
) -> Iterator[LogEntry]:
    """Every line of ``flow_run``'s logs matching the filters, in sequence order, read in pages of
    :data:`EXPORT_PAGE` (each page a short read of its own), so a download of any size holds one
    page in memory. log:read is checked at the call, before any line is read."""
    authorize(actor, "log:read", flow_run)

    def pages() -> Iterator[LogEntry]:
        after: int | None = None
        while True:
            page = logs_list(actor=actor, flow_run=flow_run, level_gte=level_gte, task_run_id=task_run_id,
                             after_sequence=after, search=search, limit=EXPORT_PAGE)
            yield from page
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1].sequence

    return pages()


def purge_expired_logs(*, now: datetime | None = None, retention_days: int | None = None) -> int:
    """Delete logs older than their workspace's retention (its plan's; ``retention_days``
    overrides it for every workspace), in chunks, each its own short transaction. Returns how
    many were deleted. Safe to run concurrently."""
    now = now or timezone.now()
    with rls_bypass():
        default, other = log_retention_by_workspace(now=now)
    if retention_days is not None:
        default, other = retention_days, {}
    total = _purge(Q(created_at__lt=now - timedelta(days=default)) & ~Q(workspace_id__in=list(other)))
    by_days: dict[int, list[Any]] = {}
    for workspace_id, days in other.items():
        by_days.setdefault(days, []).append(workspace_id)
    for days, workspace_ids in by_days.items():
        total += _purge(Q(created_at__lt=now - timedelta(days=days), workspace_id__in=workspace_ids))
    return total


def _purge(expired: Q) -> int:
    total = 0
    while True:
        with transaction.atomic(), rls_bypass():
            ids = list(
                LogEntry.objects.unscoped().filter(expired)
                .select_for_update(skip_locked=True).values_list("pk", flat=True)[:PURGE_CHUNK]
            )
            if ids:
                LogEntry.objects.unscoped().filter(pk__in=ids).delete()
        total += len(ids)
        if len(ids) < PURGE_CHUNK:
            return total
