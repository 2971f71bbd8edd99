"""Creating runs: the one place a flow run is born, with its first state (SCHEDULED, state_version
1) and that state's history row, in the caller's transaction.

Usage (the single create, the bulk create and the scheduler tick all do this)::

    from orchestration.engine import new_scheduled_run, insert_scheduled_runs

    now = db_now()
    runs = [new_scheduled_run(flow=flow, flow_version=version, name=..., now=now,
                              scheduled_start=start, parameters=..., labels=...,
                              created_by_kind=..., created_by_user=..., schedule=...,
                              idempotency_key=...)
            for ... in ...]
    inserted = insert_scheduled_runs(runs, now=now, ignore_conflicts=True)

- :func:`new_scheduled_run` builds an unsaved :class:`FlowRun` already in its first state.
- :func:`insert_scheduled_runs` inserts the runs and their first history rows, then announces the
  inserted ones: one ``flow_run.created`` event (``orchestration.events.flow_run_created``) and the
  agent pushes (``services.live.runs_available``), both sent after commit. Callers do NOT publish
  ``flow_run.created`` or call ``runs_available`` themselves.
- With ``ignore_conflicts=True`` a run that hits a unique constraint (an idempotency key another
  call inserted first, or a (schedule, scheduled_start) another tick created) is skipped silently;
  only the runs actually inserted are returned, get history rows and are announced. The caller
  looks up the winner in place of a skipped run if it needs one.

Everything after the first state goes through :func:`~orchestration.engine.flow_run_set_state`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections

from core.rows import new
from orchestration import events
from orchestration.models import Flow, FlowRun, FlowRunState, FlowVersion, Schedule, StateType
from orchestration.services import live

from . import creation_rules
from .core import db_now

#: Rows per INSERT statement when creating many runs (5,000 bulk creates, scheduler batches).
INSERT_BATCH_SIZE = 1000
SCHEDULED_BY_SCHEDULE = "Scheduled by the flow's schedule."


def new_scheduled_run(
    *,
    flow: Flow,
    flow_version: FlowVersion,
    name: str,
    now: dt.datetime | None,
    scheduled_start: dt.datetime | None = None,
    parameters: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    created_by_kind: str = FlowRun.CreatedBy.API,
    created_by_user: Any = None,
    schedule: Schedule | None = None,
    idempotency_key: str | None = None,
    parent_flow_run_id: Any = None,
    parent_task_run_id: Any = None,
) -> FlowRun:
    """An unsaved run of ``flow_version`` in its first state, SCHEDULED at ``scheduled_start``
    (default: ``now``, the database clock of the caller's transaction). ``labels`` default to the
    version's. ``parent_flow_run_id`` / ``parent_task_run_id``: the run (task run) that created
    this one, already checked to be of the same workspace by the caller. Insert it with
    :func:`insert_scheduled_runs`, or — one run, ``now=None`` — with :func:`insert_scheduled_run`,
    which stamps it with the database clock as it inserts it."""
    # The clock fields stay None for insert_scheduled_run, which has the database fill them.
    clock: dict[str, Any] = {"scheduled_start": scheduled_start or now, "state_timestamp": now, "created_at": now}
    run = new(
        FlowRun,
        id=uuid.uuid4(),
        workspace_id=flow.workspace_id,
        name=name,
        parameters=parameters if parameters is not None else {},
        labels=labels if labels is not None else list(flow_version.labels or []),
        idempotency_key=idempotency_key,
        created_by_kind=created_by_kind,
        parent_flow_run_id=parent_flow_run_id,
        parent_task_run_id=parent_task_run_id,
        state_type=StateType.SCHEDULED,
        state_name="Scheduled",
        state_version=1,  # the first state; its history row is written by insert_scheduled_runs
        **clock,
    )
    # As FlowRun(flow=…) would: the id and the object kept on the run (the events read them).
    for field, related in (("flow", flow), ("flow_version", flow_version), ("created_by_user", created_by_user),
                           ("schedule", schedule)):
        if related is not None:
            setattr(run, field, related)
    return run


def _first_state_details(run: FlowRun) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if run.scheduled_start is not None:
        details["scheduled_start"] = run.scheduled_start.isoformat()
    if run.schedule_id is not None:
        details["schedule_id"] = str(run.schedule_id)
    return details


def first_state_row(run: FlowRun) -> FlowRunState:
    """The history row of a run's first state (SCHEDULED, at the run's state timestamp)."""
    details = _first_state_details(run)
    message = ""
    if run.created_by_kind == FlowRun.CreatedBy.SCHEDULE:
        message = SCHEDULED_BY_SCHEDULE
    return new(
        FlowRunState, workspace_id=run.workspace_id, flow_run_id=run.pk, type=StateType.SCHEDULED, name="Scheduled",
        message=message, timestamp=run.state_timestamp, details=details,
    )


def insert_scheduled_runs(
    runs: Sequence[FlowRun], *, now: dt.datetime, ignore_conflicts: bool = False, partial: bool = False
) -> list[FlowRun]:
    """Insert ``runs`` (from :func:`new_scheduled_run`) with their first history rows and announce
    them; return the runs inserted, in the order given. Without ``ignore_conflicts`` a unique
    conflict raises ``IntegrityError``; with it, conflicting runs are skipped (see the module).
    The creation rules (creation_rules.py: the run quota) accept the inserted runs or refuse them
    by raising; with ``partial`` (the scheduler) only the earliest runs that fit are inserted.
    ``now``: the clock the agents' pushes compare start times with (the caller's ``db_now()``).
    Must run inside the caller's transaction, scoped to the runs' workspace (or ``rls_bypass``)."""
    if not runs:
        return []
    if partial:
        runs = creation_rules.trim(runs)
        if not runs:
            return []
    FlowRun.objects.unscoped().bulk_create(runs, batch_size=INSERT_BATCH_SIZE, ignore_conflicts=ignore_conflicts)
    inserted = list(runs)
    if ignore_conflicts:
        # A skipped row keeps our id in memory only: the ids that exist now are the ones we wrote.
        existing = set(FlowRun.objects.unscoped().filter(pk__in=[r.pk for r in runs]).values_list("pk", flat=True))
        inserted = [r for r in runs if r.pk in existing]
    FlowRunState.objects.unscoped().bulk_create([first_state_row(r) for r in inserted], batch_size=INSERT_BATCH_SIZE)
    if partial:
        creation_rules.untrim(runs, inserted)
    else:
        creation_rules.check_inserted(inserted)  # last: a rule's row lock is held until the commit
    _announce(inserted, now=now)
    return inserted


def _announce(inserted: list[FlowRun], *, now: dt.datetime) -> None:
    if inserted:
        events.flow_run_created(inserted)
        live.runs_available(inserted, now=now)  # agents claim due runs now, set timers for the rest


def _isoformat_sql(column: str) -> str:
    """SQL for Python's ``isoformat()`` of a UTC timestamp (microseconds only when there are
    some), so a first state's details read alike whichever path wrote them."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    micros = f"mod(date_part('microseconds', {column})::bigint, 1000000)"
    return (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') "
            f"|| CASE WHEN {micros} = 0 THEN '' ELSE to_char({utc}, '.US') END || '+00:00'")


_CLOCK_FIELDS = ("scheduled_start", "state_timestamp", "created_at")


def insert_scheduled_run(run: FlowRun, *, ignore_conflicts: bool = False) -> bool:
    """Insert one run from :func:`new_scheduled_run` (``now=None``) with its first history row and
    announce it, like :func:`insert_scheduled_runs`; True when inserted, False when a conflict
    skipped it (``ignore_conflicts``). Its state time, creation time and (unless given) scheduled
    start are the database clock, the transaction's ``now()`` (D6), set on ``run`` as stored. On
    PostgreSQL one statement: the run's INSERT and the history row's as CTEs."""
    if not settings.IS_POSTGRES:
        now = db_now()
        run.scheduled_start = run.scheduled_start or now
        run.state_timestamp = run.created_at = now
        return bool(insert_scheduled_runs([run], now=now, ignore_conflicts=ignore_conflicts))
    fields = FlowRun._meta.concrete_fields
    columns = ", ".join(f'"{f.column}"' for f in fields)
    values, params = [], []
    conn = connections[DEFAULT_DB_ALIAS]  # one thread-local lookup, not several per value
    for f in fields:
        if f.name in _CLOCK_FIELDS and getattr(run, f.attname) is None:
            values.append("now()")
        else:
            values.append("%s")
            params.append(f.get_db_prep_save(getattr(run, f.attname), conn))
    details_sql = "%s::jsonb"
    if run.scheduled_start is None:  # the database's clock: its ISO form is written by the database too
        details_sql = f"jsonb_build_object('scheduled_start', {_isoformat_sql('r.scheduled_start')}) || {details_sql}"
    history = FlowRunState._meta.db_table
    sql = (
        f'WITH r AS (INSERT INTO "{FlowRun._meta.db_table}" ({columns}) VALUES ({", ".join(values)}) '  # noqa: S608 (names from the models)
        f"{'ON CONFLICT DO NOTHING ' if ignore_conflicts else ''}"
        "RETURNING scheduled_start, state_timestamp, created_at), "
        f'h AS (INSERT INTO "{history}" '
        "(workspace_id, flow_run_id, type, name, message, result_ref, details, timestamp) "
        f"SELECT %s, %s, %s, %s, %s, '', {details_sql}, r.state_timestamp FROM r) "
        "SELECT scheduled_start, state_timestamp, created_at FROM r"
    )
    message = SCHEDULED_BY_SCHEDULE if run.created_by_kind == FlowRun.CreatedBy.SCHEDULE else ""
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, run.workspace_id, run.pk, StateType.SCHEDULED, "Scheduled", message,
                             json.dumps(_first_state_details(run))])
        stored = cursor.fetchone()
    if stored is None:
        return False
    run.scheduled_start, run.state_timestamp, run.created_at = stored
    creation_rules.check_inserted([run])
    _announce([run], now=run.created_at)
    return True


__all__ = ["first_state_row", "insert_scheduled_run", "insert_scheduled_runs", "new_scheduled_run"]
