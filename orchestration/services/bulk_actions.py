"""Bulk actions on runs — cancel, clear late, mark — worked through in small batches.

A bulk action used to be one transaction over every matching run: thousands of row locks held for
minutes, agents' reports and heartbeats queued behind them (and crashed past their lease), and runs
that moved on meanwhile (SCHEDULED → RUNNING) were acted on by a filter that no longer described
them. Now:

- the runs matching the filter when the action starts (at most :data:`MAX_BULK_ACTION`) are its
  selection (``matched``);
- they are processed :data:`BATCH_SIZE` at a time, each batch its own short transaction that
  commits after :data:`BATCH_SECONDS` at the latest (the rest goes to the next batch), so an agent's
  write to one of those runs waits a moment at most;
- a batch locks its runs with ``FOR UPDATE SKIP LOCKED`` *and the filter in the same statement*,
  so a run is locked only if it still matches; one that no longer matches is ``skipped`` (a
  RUNNING run is never cancelled by a "scheduled" filter), one that still matches but that
  another transaction holds is retried in a later batch; every change goes through the engine;
- the counts (``done``, ``skipped``, ``failed``) are stored with each batch and announced with a
  ``bulk_action.progress`` event, readable over REST and GraphQL.

A selection of at most :data:`SYNC_MAX` runs is handled in the caller's request with the same
batches; a larger one runs in the background: a Celery task, or in embedded mode (no worker,
``CELERY_TASK_ALWAYS_EAGER``) a thread beside the server.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.functions import Now

from accounts.authz import NotFound, Principal, authorize
from accounts.services.audit import audit_record
from core.errors import InvalidInput, ServiceError
from core.tenancy import rls_bypass, workspace_scope
from orchestration import events
from orchestration.engine import OrchestrationResult, ProposedState, SetStateStatus, flow_run_set_state
from orchestration.models import STATE_TYPES, TERMINAL_STATES, BulkAction, FlowRun, StateType
from orchestration.selectors import filter_runs, runs_visible_to

logger = logging.getLogger(__name__)

BULK_ACTIONS = ("cancel", "clear_late", "mark")
MAX_BULK_ACTION = 10_000
BATCH_SIZE = 100
# A batch commits after this long whatever it has done, so its row locks are short-lived.
BATCH_SECONDS = 0.2
# Selections this small are handled in the caller's request (one batch).
SYNC_MAX = 50
# Runs another transaction holds are retried for this long, then counted as failed.
LOCKED_RETRY_SECONDS = 30.0


# --- the selection ------------------------------------------------------------------------------


def _jsonable(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as stored on the record (and read again by the background run)."""
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[key] = value
    return out


def _selection(actor: Principal, action: str, filters: dict[str, Any]) -> QuerySet[FlowRun]:
    """The runs ``action`` applies to under ``filters``, as the actor may see them: the filter
    and the state the action needs (re-read under each batch's lock)."""
    from orchestration.services.runs import bulk_run_filter

    # No joins: this is also the statement that locks a batch's runs.
    runs = filter_runs(runs_visible_to(actor).select_related(None), bulk_run_filter(filters))
    if action == "cancel":
        return runs.exclude(state_type__in=[*TERMINAL_STATES, StateType.CANCELLING])
    if action == "clear_late":
        return runs.filter(state_type=StateType.SCHEDULED, state_name="Late")
    return runs


def _validate(action: Any, state_type: Any) -> None:
    if action not in BULK_ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(BULK_ACTIONS)}.", details={"action": ["Invalid."]})
    if action == "mark" and state_type not in STATE_TYPES:
        raise InvalidInput("mark needs a state_type.", code="invalid_state", details={"state_type": ["Invalid."]})


# --- one run ------------------------------------------------------------------------------------


def _apply(actor: Principal, action: str, state_type: str, run: FlowRun) -> str:
    """Apply the action to one locked run that still matches; "done", "skipped" or "failed"
    (a proposal the rules did not accept). A refusal raised as an error propagates."""
    from orchestration.services.runs import _cancel_locked, _mark_locked

    if action == "cancel" and (run.state_type in TERMINAL_STATES or run.state_type == StateType.CANCELLING):
        return "skipped"
    if action == "clear_late" and not (run.state_type == StateType.SCHEDULED and run.state_name == "Late"):
        return "skipped"
    result: OrchestrationResult
    if action == "cancel":
        result = _cancel_locked(actor, run)
    elif action == "clear_late":
        result = flow_run_set_state(
            actor=actor, flow_run_id=run.pk, workspace_id=run.workspace_id,
            state=ProposedState(type=StateType.CANCELLED, name="Cancelled",
                                message=f"Late run cleared by {actor.label}"),
        )
    else:
        result = _mark_locked(actor, run, state_type, "")
    return "done" if result.status is SetStateStatus.ACCEPT else "failed"


def _apply_guarded(actor: Principal, action: str, state_type: str, run: FlowRun) -> str:
    """:func:`_apply` in a savepoint: an error leaves this run as it was and the batch intact."""
    try:
        with transaction.atomic():
            return _apply(actor, action, state_type, run)
    except (ServiceError, NotFound):
        logger.info("bulk %s of run %s refused", action, run.pk, exc_info=True)
        return "failed"


# --- batches ------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, bulk: BulkAction) -> None:
        self.bulk = bulk
        self.done = self.skipped = self.failed = 0

    def add(self, outcome: str, n: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + n)

    def store(self, status: str) -> None:
        """Write the counts (in the current transaction) and announce them when it commits."""
        fields: dict[str, Any] = {"status": status, "done": self.done, "skipped": self.skipped, "failed": self.failed}
        if status in (BulkAction.Status.FINISHED, BulkAction.Status.FAILED):
            fields["finished_at"] = Now()
        BulkAction.objects.for_workspace(self.bulk.workspace_id).filter(pk=self.bulk.pk).update(**fields)
        for name, value in fields.items():
            if name != "finished_at":
                setattr(self.bulk, name, value)
        events.bulk_action_progress(self.bulk)


class _Retry(Exception):
    """A run of the batch raised: the batch is rolled back and done again, a savepoint per run."""


def _batch(actor: Principal, bulk: BulkAction, chunk: list[Any], progress: _Progress) -> tuple[list[Any], list[Any]]:
    """One short transaction over ``chunk``; returns (ids another transaction held, ids left
    for the next batch because the time box ran out). Runs are acted on without a savepoint each
    (two round trips fewer per run); if one raises, the batch is rolled back and done again with
    savepoints, so that one run is counted failed and the others still change."""
    try:
        return _batch_once(actor, bulk, chunk, progress, guarded=False)
    except _Retry:
        return _batch_once(actor, bulk, chunk, progress, guarded=True)


def _batch_once(actor: Principal, bulk: BulkAction, chunk: list[Any], progress: _Progress, *,
                guarded: bool) -> tuple[list[Any], list[Any]]:
    counts = {"done": 0, "skipped": 0, "failed": 0}
    with transaction.atomic(), workspace_scope([bulk.workspace_id]):
        selection = _selection(actor, bulk.action, bulk.filters)
        # The filter is in the locking statement: a run that no longer matches is never locked
        # (an agent's report on it does not wait), and one that another transaction holds is
        # passed over rather than waited for.
        rows = list(
            selection.filter(pk__in=chunk).order_by("-scheduled_start", "-pk")
            .select_for_update(skip_locked=True, of=("self",))
        )
        got = {run.pk for run in rows}
        missing = [pk for pk in chunk if pk not in got]
        # Not locked: either it no longer matches (moved on, deleted) or someone holds it.
        held = set(selection.filter(pk__in=missing).values_list("pk", flat=True)) if missing else set()
        counts["skipped"] += len(missing) - len(held)
        started = time.monotonic()
        left: list[Any] = []
        for index, run in enumerate(rows):
            if index and time.monotonic() - started > BATCH_SECONDS:
                left = [r.pk for r in rows[index:]]
                break
            if guarded:
                counts[_apply_guarded(actor, bulk.action, bulk.state_type, run)] += 1
                continue
            try:
                counts[_apply(actor, bulk.action, bulk.state_type, run)] += 1
            except (ServiceError, NotFound) as exc:
                raise _Retry() from exc
        for outcome, n in counts.items():
            progress.add(outcome, n)
        progress.store(BulkAction.Status.RUNNING)
    return [pk for pk in missing if pk in held], left


def _execute(actor: Principal, bulk: BulkAction) -> BulkAction:
    """Work through the action's selection in batches; the record ends FINISHED."""
    with transaction.atomic(), workspace_scope([bulk.workspace_id]):
        # Newest first: claims take due runs oldest first, so the two work from opposite ends and
        # a claim does not walk past the runs a batch holds or just changed.
        ids = list(
            _selection(actor, bulk.action, bulk.filters)
            .order_by("-scheduled_start", "-pk").values_list("pk", flat=True)[:MAX_BULK_ACTION]
        )
        bulk.matched = len(ids)
        BulkAction.objects.for_workspace(bulk.workspace_id).filter(pk=bulk.pk).update(
            status=BulkAction.Status.RUNNING, matched=len(ids), started_at=Now()
        )
    progress = _Progress(bulk)
    queue: deque[Any] = deque(ids)
    held: list[Any] = []
    deadline: float | None = None
    pause = 0.02
    while queue or held:
        if not queue:
            # Only runs others held are left: give those transactions a moment, then try again.
            deadline = deadline or time.monotonic() + LOCKED_RETRY_SECONDS
            if time.monotonic() > deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
            queue.extend(held)
            held = []
        chunk = [queue.popleft() for _ in range(min(BATCH_SIZE, len(queue)))]
        still_held, left = _batch(actor, bulk, chunk, progress)
        held.extend(still_held)
        queue.extendleft(reversed(left))
    with transaction.atomic(), workspace_scope([bulk.workspace_id]):
        if held:
            progress.add("failed", len(held))
            logger.warning("bulk action %s: %d runs stayed locked by others; left as they were", bulk.pk, len(held))
        progress.store(BulkAction.Status.FINISHED)
    return bulk


# --- entry points -------------------------------------------------------------------------------


def bulk_action_create(
    *, actor: Principal, action: str, filters: dict[str, Any], state_type: str | None = None,
    background: bool | None = None,
) -> BulkAction:
    """Start ``action`` on the runs of the actor's workspace matching ``filters``. A selection of
    at most :data:`SYNC_MAX` runs (or any, with ``background=False``) is handled before this
    returns; a larger one (or any, with ``background=True``) is queued and the record returned
    PENDING — follow it with :func:`orchestration.selectors.access_bulk_action` or the
    ``bulk_action.progress`` events."""
    _validate(action, state_type)
    with transaction.atomic(), workspace_scope([actor.workspace.pk]):
        authorize(actor, "flow_run:update", actor.workspace)
        count = _selection(actor, action, filters)[: MAX_BULK_ACTION].count()  # also validates the filters
        if background is None:
            background = count > SYNC_MAX
        bulk = BulkAction.objects.unscoped().create(
            workspace=actor.workspace, action=action, filters=_jsonable(filters),
            state_type=state_type if action == "mark" else "", matched=count,
            status=BulkAction.Status.PENDING if background else BulkAction.Status.RUNNING,
            actor_role=actor.role, created_by_user=actor.user, service_account=actor.service_account,
            api_key=actor.api_key,
        )
        audit_record(
            workspace=actor.workspace, action="bulk_action.created", target=bulk, actor=actor,
            target_label=f"{action} on {count} runs",
            data={"action": action, "filters": bulk.filters, "state_type": bulk.state_type, "matched": count},
        )
        if background:
            events.bulk_action_progress(bulk)
            _start_in_background(bulk.pk)
            return bulk
    return _execute(actor, bulk)


def _start_in_background(bulk_action_id: Any) -> None:
    def start() -> None:
        try:
            if settings.CELERY_TASK_ALWAYS_EAGER:
                # Embedded mode has no worker: run beside the server, like its periodic loop.
                threading.Thread(target=_run_in_thread, args=(bulk_action_id,), daemon=True,
                                 name=f"flowdeck-bulk-{bulk_action_id}").start()
            else:
                from orchestration.tasks import run_bulk_action_task

                run_bulk_action_task.delay(str(bulk_action_id))
        except Exception as exc:  # the broker is down: say so on the record
            logger.exception("could not start bulk action %s", bulk_action_id)
            with rls_bypass():
                BulkAction.objects.unscoped().filter(pk=bulk_action_id, status=BulkAction.Status.PENDING).update(
                    status=BulkAction.Status.FAILED, error=f"Could not be started: {exc}", finished_at=Now()
                )

    transaction.on_commit(start)


def _run_in_thread(bulk_action_id: Any) -> None:
    try:
        bulk_action_run(bulk_action_id=bulk_action_id)
    finally:
        connection.close()  # this thread's own connection


def _actor(bulk: BulkAction) -> Principal:
    """Who asked, with the role they had when they asked (the request was authorized then)."""
    return Principal(workspace=bulk.workspace, role=bulk.actor_role, user=bulk.created_by_user,
                     service_account=bulk.service_account, api_key=bulk.api_key)


def bulk_action_run(*, bulk_action_id: Any) -> BulkAction | None:
    """Run a queued bulk action (the background task). Idempotent: only a PENDING action is
    taken, once; a re-delivered task does nothing."""
    with rls_bypass():  # the workspace is the record's own
        taken = BulkAction.objects.unscoped().filter(pk=bulk_action_id, status=BulkAction.Status.PENDING).update(
            status=BulkAction.Status.RUNNING, started_at=Now()
        )
        if not taken:
            return None
        bulk = (
            BulkAction.objects.unscoped()
            .select_related("workspace", "created_by_user", "service_account", "api_key")
            .get(pk=bulk_action_id)
        )
    try:
        return _execute(_actor(bulk), bulk)
    except Exception as exc:
        logger.exception("bulk action %s failed", bulk_action_id)
        with transaction.atomic(), workspace_scope([bulk.workspace_id]):
            BulkAction.objects.for_workspace(bulk.workspace_id).filter(pk=bulk.pk).update(
                status=BulkAction.Status.FAILED, error=str(exc)[:2000], finished_at=Now()
            )
            bulk.status = BulkAction.Status.FAILED
            events.bulk_action_progress(bulk)
        return bulk

