"""Concurrency limits: per flow (``Flow.concurrency_limit``) and per task tag
(:class:`ConcurrencyLimit`, whose occupied slots are :class:`ConcurrencySlot` rows).

Limits are enforced by the orchestration rules on the transition to RUNNING, under a row lock (the
flow's or the limit's), and slots are released in the same transaction that ends the task run or
its flow run, so a dead agent can never leak one. A task run with a limited tag runs its code only
while it holds its slots: it finishes (COMPLETED/FAILED) only from RUNNING, unless its state ran no
code (``RequireTagSlotsToFinish``); a mapped task's parent takes none (its children do). The CRUD
here is for people (REST/GraphQL).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from accounts.authz import NotFound, Principal, authorize
from accounts.services.audit import audit_record
from core.errors import InvalidInput
from core.tenancy import workspace_scope
from orchestration import events
from orchestration.engine.core import Write
from orchestration.models import ConcurrencyLimit, ConcurrencySlot, FlowRun, StateType, TaskRun

MAX_TAG_LENGTH = 100
# What a WAIT for a tag slot tells the SDK to wait before proposing RUNNING again. Short: tagged
# tasks are often short, and a waiting task that polls late leaves a freed slot idle meanwhile.
TAG_WAIT_SECONDS = 1


# --- CRUD ---------------------------------------------------------------------------------------------


def _tag(tag: str) -> str:
    tag = (tag or "").strip()
    if not tag or len(tag) > MAX_TAG_LENGTH:
        raise InvalidInput(f"A tag needs 1–{MAX_TAG_LENGTH} characters.", details={"tag": ["Invalid."]})
    return tag


@transaction.atomic
def concurrency_limit_list(*, actor: Principal) -> list[ConcurrencyLimit]:
    with workspace_scope([actor.workspace.pk]):
        authorize(actor, "project:read", actor.workspace)
        return list(ConcurrencyLimit.objects.for_workspace(actor.workspace).order_by("tag"))


@transaction.atomic
def concurrency_limit_set(*, actor: Principal, tag: str, limit: int) -> ConcurrencyLimit:
    """Create or change the limit of ``tag`` (at most ``limit`` task runs with it RUNNING at once).
    Lowering a limit below the slots held does not stop running tasks; new ones wait."""
    tag = _tag(tag)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 1_000_000:
        raise InvalidInput("A limit is a whole number from 0 to 1,000,000.", details={"limit": ["Invalid."]})
    with workspace_scope([actor.workspace.pk]):
        authorize(actor, "project:write", actor.workspace)
        # Locked so that two people changing the same limit each log the value they replaced.
        previous = (
            ConcurrencyLimit.objects.for_workspace(actor.workspace)
            .select_for_update()
            .filter(tag=tag)
            .values_list("limit", flat=True)
            .first()
        )
        row, _ = ConcurrencyLimit.objects.unscoped().update_or_create(
            workspace=actor.workspace, tag=tag, defaults={"limit": limit}
        )
        if previous != limit:
            audit_record(workspace=actor.workspace, action="concurrency_limit.set", target=row, actor=actor,
                         target_label=tag, data={"tag": tag, "limit": limit, "previous": previous})
        events.concurrency_limit_updated(row)
        return row


@transaction.atomic
def concurrency_limit_delete(*, actor: Principal, tag: str) -> None:
    """Remove the limit of ``tag`` (its slots go with it)."""
    with workspace_scope([actor.workspace.pk]):
        authorize(actor, "project:write", actor.workspace)
        row = ConcurrencyLimit.objects.for_workspace(actor.workspace).select_for_update().filter(tag=tag).first()
        if row is None:
            raise NotFound()
        audit_record(workspace=actor.workspace, action="concurrency_limit.deleted", target=row, actor=actor,
                     target_label=tag, data={"tag": tag, "limit": row.limit})
        events.concurrency_limit_deleted(row)
        row.delete()


@transaction.atomic
def concurrency_limit_usage(*, actor: Principal, tag: str) -> dict[str, Any]:
    """The limit of ``tag`` and the task runs holding its slots."""
    with workspace_scope([actor.workspace.pk]):
        authorize(actor, "project:read", actor.workspace)
        row = ConcurrencyLimit.objects.for_workspace(actor.workspace).filter(tag=tag).first()
        if row is None:
            raise NotFound()
        holders = list(
            ConcurrencySlot.objects.for_workspace(actor.workspace)
            .filter(limit=row)
            .values_list("task_run_id", flat=True)
        )
        return {"tag": row.tag, "limit": row.limit, "active": len(holders), "task_run_ids": holders}


# --- helpers the rules use (inside the transition's transaction) --------------------------------------


def limits_for(context: Any, tags: Iterable[str]) -> list[ConcurrencyLimit]:
    """The tag limits that apply to ``tags`` (the workspace's limits are read once per context)."""
    tags = [t for t in tags or [] if isinstance(t, str)]
    if not tags:
        return []
    limits: dict[str, ConcurrencyLimit] | None = context.cache.get("tag_limits")
    if limits is None:
        limits = workspace_limits(context.run.workspace_id)
        context.cache["tag_limits"] = limits
    return [limits[t] for t in sorted(set(tags)) if t in limits]


def is_mapped_parent(run: TaskRun, version_tasks: dict[str, dict[str, Any]]) -> bool:
    """Whether ``run`` is the parent of a mapped task (it runs no code; its children do)."""
    return run.map_index == -1 and bool(version_tasks.get(run.task_key, {}).get("mapped"))


def workspace_limits(workspace_id: Any) -> dict[str, ConcurrencyLimit]:
    return {row.tag: row for row in ConcurrencyLimit.objects.for_workspace(workspace_id)}


def acquire_task_slots(run: TaskRun, limits: list[ConcurrencyLimit]) -> ConcurrencyLimit | None:
    """Take one slot of each limit for ``run``, or none: returns the first full limit, else None.

    Limits are locked in id order (no deadlock between two task runs sharing tags) and counted under
    the lock, so concurrent RUNNING proposals never exceed a limit."""
    ordered = sorted(limits, key=lambda row: row.pk)
    locked = list(
        ConcurrencyLimit.objects.for_workspace(run.workspace_id)
        .select_for_update()
        .filter(pk__in=[row.pk for row in ordered])
        .order_by("pk")
    )
    if not locked:
        return None
    held = set(
        ConcurrencySlot.objects.for_workspace(run.workspace_id)
        .filter(task_run_id=run.pk, limit_id__in=[row.pk for row in locked])
        .values_list("limit_id", flat=True)
    )
    counts = dict(
        _count_slots(run.workspace_id, [row.pk for row in locked if row.pk not in held])
    )
    for row in locked:
        if row.pk not in held and counts.get(row.pk, 0) >= row.limit:
            return row
    ConcurrencySlot.objects.unscoped().bulk_create(
        [
            ConcurrencySlot(
                workspace_id=run.workspace_id, limit_id=row.pk, task_run_id=run.pk, flow_run_id=run.flow_run_id
            )
            for row in locked
            if row.pk not in held
        ]
    )
    return None


def _count_slots(workspace_id: Any, limit_ids: list[Any]) -> list[tuple[Any, int]]:
    from django.db.models import Count

    if not limit_ids:
        return []
    return list(
        ConcurrencySlot.objects.for_workspace(workspace_id)
        .filter(limit_id__in=limit_ids)
        .values("limit_id")
        .annotate(n=Count("id"))
        .values_list("limit_id", "n")
    )


def release_task_slots(workspace_id: Any, task_run_ids: list[Any]) -> int:
    if not task_run_ids:
        return 0
    deleted, _ = ConcurrencySlot.objects.for_workspace(workspace_id).filter(task_run_id__in=task_run_ids).delete()
    return deleted


def release_flow_run_slots(workspace_id: Any, flow_run_id: Any) -> int:
    deleted, _ = ConcurrencySlot.objects.for_workspace(workspace_id).filter(flow_run_id=flow_run_id).delete()
    return deleted


def flow_run_slots_release(workspace_id: Any, flow_run_id: Any) -> Write:
    """Releasing every slot of a flow run's task runs, as a write of the flow run's transition
    (one CTE of its statement on PostgreSQL)."""
    table = ConcurrencySlot._meta.db_table
    return Write(
        ctes=[f'slots_released AS (DELETE FROM "{table}" WHERE workspace_id = %s AND flow_run_id = %s)'],  # noqa: S608 (table name from the model)
        params=[workspace_id, flow_run_id],
        run=lambda: [(release_flow_run_slots(workspace_id, flow_run_id),)],
    )


def flow_slot_available(run: FlowRun) -> bool:
    """Whether ``run`` may start under its flow's limit. Locks the flow row until the transaction
    ends, so the count and the transition are one step for concurrent starters."""
    from orchestration.models import Flow

    limit = (
        Flow.objects.for_workspace(run.workspace_id)
        .select_for_update()
        .filter(pk=run.flow_id)
        .values_list("concurrency_limit", flat=True)
        .first()
    )
    if limit is None:
        return True
    running = (
        FlowRun.objects.for_workspace(run.workspace_id)
        .filter(flow_id=run.flow_id, state_type__in=[StateType.RUNNING, StateType.CANCELLING])
        .exclude(pk=run.pk)
        .count()
    )
    return running < limit

