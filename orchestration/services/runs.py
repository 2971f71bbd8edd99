"""Flow runs as people and integrations see them: create (one or 5,000 at once), cancel, restart,
mark as, delete and bulk actions on a filter.

Every function takes the acting :class:`Principal`, authorizes with the role matrix, and scopes
itself to the actor's workspace. A run is born in its first state through the engine's creation
path (``orchestration.engine.creation``) and every later state change goes through the engine's
entry point (``orchestration.engine``); nothing here assigns a run's state.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from accounts.authz import NotFound, Principal, authorize
from core import rows
from core.errors import Conflict, InvalidInput
from core.tenancy import workspace_scope
from orchestration import events
from orchestration.engine import (
    ForcePolicy,
    OrchestrationResult,
    ProposedState,
    SetStateStatus,
    db_now,
    flow_run_set_state,
    insert_scheduled_run,
    insert_scheduled_runs,
    new_scheduled_run,
    task_run_set_state,
)
from orchestration.models import STATE_TYPES, TERMINAL_STATES, Flow, FlowRun, FlowVersion, Schedule, StateType, TaskRun
from orchestration.selectors import FlowRunFilter, flow_version_for_new_run, keyed_run_and_version_for_new_run
from orchestration.services import live
from orchestration.services.parameters import validate_parameters

MAX_BULK_RUNS = 5_000
MAX_LABELS = 100
MAX_LABEL_LENGTH = 100
MAX_NAME = 200
MAX_IDEMPOTENCY_KEY = 200
RESTARTABLE = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
BULK_FILTERS = ("flow_id", "state_type", "state_types", "labels", "scheduled_before", "scheduled_after")
RUN_SPEC_FIELDS = ("parameters", "labels", "scheduled_start", "idempotency_key", "name")


# --- validation -----------------------------------------------------------------------------------


def _labels(value: Any, errors: dict[str, list[str]], path: str = "labels") -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_LABELS
        or not all(isinstance(v, str) and 0 < len(v) <= MAX_LABEL_LENGTH for v in value)
    ):
        errors[path] = [f"Must be a list of at most {MAX_LABELS} non-empty strings of ≤ {MAX_LABEL_LENGTH} characters."]
        return None
    return list(dict.fromkeys(value))


def _text(value: Any, limit: int, path: str, errors: dict[str, list[str]]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        errors[path] = [f"Must be a non-empty string of at most {limit} characters."]
        return None
    return value.strip()


def _when(value: Any, path: str, errors: dict[str, list[str]]) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            errors[path] = ["Must be an ISO 8601 date-time."]
            return None
    if not isinstance(value, dt.datetime):
        errors[path] = ["Must be a date-time."]
        return None
    if value.tzinfo is None:
        errors[path] = ["Must carry a time zone (e.g. 2030-01-01T00:00:00Z)."]
        return None
    return value


def _first_error(errors: dict[str, list[str]]) -> str:
    path, messages = next(iter(errors.items()))
    more = f" ({len(errors) - 1} more errors in details)" if len(errors) > 1 else ""
    return f"{path}: {messages[0]}{more}"


def _run_name(flow: Flow) -> str:
    return f"{flow.name[:180]}-{uuid.uuid4().hex[:8]}"


def _version_for_new_run(flow: Flow) -> FlowVersion:
    """The version a new run of ``flow`` uses (:func:`~orchestration.selectors.flow_version_for_new_run`);
    a flow without one cannot run."""
    version = flow_version_for_new_run(flow)
    if version is None:
        raise Conflict("The flow has no active version to run; register or unarchive one.", code="no_active_version")
    return version


def _prepare(
    flow: Flow, version: FlowVersion, spec: dict[str, Any], errors: dict[str, list[str]], prefix: str = ""
) -> dict[str, Any]:
    """One run's fields, checked (problems go to ``errors`` under ``prefix``), ready for
    :func:`~orchestration.engine.new_scheduled_run`."""
    parameters, param_errors = validate_parameters(version.parameters, spec.get("parameters"))
    errors.update({prefix + k: v for k, v in param_errors.items()})
    name = _text(spec.get("name"), MAX_NAME, prefix + "name", errors)
    return {
        "parameters": parameters,
        "labels": _labels(spec.get("labels"), errors, prefix + "labels"),  # None: the version's
        "name": name or _run_name(flow),
        "idempotency_key": _text(spec.get("idempotency_key"), MAX_IDEMPOTENCY_KEY, prefix + "idempotency_key", errors),
        "scheduled_start": _when(spec.get("scheduled_start"), prefix + "scheduled_start", errors),
    }


def _new_run(
    actor: Principal, flow: Flow, version: FlowVersion, prepared: dict[str, Any], now: dt.datetime | None,
    created_by_kind: str, schedule: Schedule | None = None,
) -> FlowRun:
    return new_scheduled_run(flow=flow, flow_version=version, now=now, created_by_kind=created_by_kind,
                             created_by_user=actor.user, schedule=schedule, **prepared)


def _own_flow(actor: Principal, flow: Flow) -> Flow:
    if flow.workspace_id != actor.workspace.pk:
        raise NotFound()
    return flow


def _parent_ids(actor: Principal, parent_flow_run: Any, parent_task_run: Any) -> dict[str, Any]:
    """The ``parent_*_id`` fields of a child run (flow of flows), checked: the parent run must be a
    run of the actor's workspace, and the parent task run one of that run's task runs (given
    alone, its run is the parent). Anything else is a 400 that names the field and links nothing;
    another workspace's run reads as no run at all."""
    def refuse(field: str, message: str) -> InvalidInput:
        return InvalidInput(f"{field}: {message}", code=f"invalid_{field}", details={field: [message]})

    def as_id(value: Any, field: str) -> uuid.UUID:
        try:
            return value.pk if isinstance(value, (FlowRun, TaskRun)) else uuid.UUID(str(value))
        except ValueError:
            raise refuse(field, "Must be a UUID.") from None

    fields: dict[str, Any] = {}
    if parent_task_run is not None:
        task_run = (TaskRun.objects.for_workspace(actor.workspace).filter(pk=as_id(parent_task_run, "parent_task_run"))
                    .only("id", "flow_run_id").first())
        if task_run is None:
            raise refuse("parent_task_run", "No task run with this id in this workspace.")
        fields["parent_task_run_id"] = task_run.pk
        if parent_flow_run is None:
            fields["parent_flow_run_id"] = task_run.flow_run_id
        elif as_id(parent_flow_run, "parent_flow_run") != task_run.flow_run_id:
            raise refuse("parent_task_run", "This task run belongs to another flow run than parent_flow_run.")
    if parent_flow_run is not None:
        run_id = as_id(parent_flow_run, "parent_flow_run")
        if not FlowRun.objects.for_workspace(actor.workspace).filter(pk=run_id).exists():
            raise refuse("parent_flow_run", "No flow run with this id in this workspace (a parent run must be "
                                            "a run of the same workspace).")
        fields["parent_flow_run_id"] = run_id
    return fields


def _runs_by_key(actor: Principal, keys: Iterable[str]) -> dict[str, FlowRun]:
    runs = FlowRun.objects.for_workspace(actor.workspace).filter(idempotency_key__in=[k.strip() for k in keys])
    return {run.idempotency_key: run for run in runs}


# --- create -----------------------------------------------------------------------------------------


def flow_run_create(
    *,
    actor: Principal,
    flow: Flow,
    parameters: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    scheduled_start: dt.datetime | str | None = None,
    idempotency_key: str | None = None,
    name: str | None = None,
    created_by_kind: str = "api",
    schedule: Schedule | None = None,
    flow_version: FlowVersion | None = None,
    parent_flow_run: Any = None,
    parent_task_run: Any = None,
    savepoint: bool = True,
) -> tuple[FlowRun, bool]:
    """Create a run of ``flow`` (its active version unless ``flow_version`` is given), SCHEDULED at
    ``scheduled_start`` (default: now). A known ``idempotency_key`` returns the existing run and
    ``created=False``; five concurrent identical creates make one row.

    ``parent_flow_run`` / ``parent_task_run`` (a run or an id; flow of flows): the run, and the
    task run, that start this one; both must be of the actor's workspace (see :func:`_parent_ids`).

    ``savepoint=False`` when an error raised here ends the caller's transaction with a rollback (a
    request): two round trips less. Otherwise the call runs in a savepoint of its own, and a
    caller may carry on after a refusal."""
    _own_flow(actor, flow)
    with transaction.atomic(savepoint=savepoint), workspace_scope([actor.workspace.pk]):
        authorize(actor, "flow_run:create", flow)
        if created_by_kind not in FlowRun.CreatedBy.values:
            raise InvalidInput(f"created_by_kind must be one of {', '.join(FlowRun.CreatedBy.values)}.",
                               details={"created_by_kind": ["Invalid."]})
        version = flow_version
        if idempotency_key is not None:
            # Read by hand: every create with a key asks (core/rows.py). Without a version given,
            # the one a new run uses is read in the same statement.
            if flow_version is None:
                existing, version = keyed_run_and_version_for_new_run(flow, idempotency_key.strip())
            else:
                existing = rows.by_field(FlowRun, actor.workspace, "idempotency_key", idempotency_key.strip())
            if existing is not None:
                return existing, False
        if flow_version is not None and flow_version.flow_id != flow.pk:
            raise InvalidInput("That version belongs to another flow.", details={"flow_version": ["Invalid."]})
        version = version or _version_for_new_run(flow)  # none found: the refusal says why
        errors: dict[str, list[str]] = {}
        prepared = _prepare(flow, version, {
            "parameters": parameters, "labels": labels, "scheduled_start": scheduled_start,
            "idempotency_key": idempotency_key, "name": name,
        }, errors)
        if errors:
            raise InvalidInput(_first_error(errors), code="invalid_run", details=errors)
        if parent_flow_run is not None or parent_task_run is not None:
            prepared.update(_parent_ids(actor, parent_flow_run, parent_task_run))
        # Stamped with the database clock as it is inserted (no clock read before).
        run = _new_run(actor, flow, version, prepared, None, created_by_kind, schedule)
        key = prepared["idempotency_key"]
        # With a key, a concurrent create of the same key may insert first: ours is then skipped
        # (the insert waits for the other to commit) and the other's run is the answer.
        if insert_scheduled_run(run, ignore_conflicts=key is not None):
            return run, True
        existing = _runs_by_key(actor, [key]).get(key)
        if existing is None:
            raise IntegrityError(f"flow run {run.pk} was not inserted")
        return existing, False


@transaction.atomic
def flow_run_bulk_create(*, actor: Principal, flow: Flow, runs: list[dict[str, Any]]) -> list[FlowRun]:
    """Create up to 5,000 runs of ``flow``'s active version in one transaction (bulk inserts; no
    rate limit applies). Each item: ``parameters``, ``labels``, ``scheduled_start``,
    ``idempotency_key``, ``name``. Any invalid item refuses the whole call with errors by index; a
    known idempotency key yields the existing run in its place."""
    _own_flow(actor, flow)
    if not isinstance(runs, list) or not runs:
        raise InvalidInput("runs must be a non-empty list.", details={"runs": ["Invalid."]})
    if len(runs) > MAX_BULK_RUNS:
        raise InvalidInput(f"At most {MAX_BULK_RUNS} runs per call ({len(runs)} given).", code="too_many_runs",
                           details={"runs": [f"At most {MAX_BULK_RUNS}."]})
    with workspace_scope([actor.workspace.pk]):
        authorize(actor, "flow_run:create", flow)
        version = _version_for_new_run(flow)
        errors: dict[str, list[str]] = {}
        prepared = []
        for i, spec in enumerate(runs):
            if not isinstance(spec, dict):
                errors[f"runs[{i}]"] = ["Must be an object."]
                continue
            unknown = set(spec) - set(RUN_SPEC_FIELDS)
            if unknown:
                errors[f"runs[{i}]"] = [f"Unknown fields: {', '.join(sorted(unknown))}."]
            prepared.append(_prepare(flow, version, spec, errors, prefix=f"runs[{i}]."))
        if errors:
            raise InvalidInput(_first_error(errors), code="invalid_run", details=errors)
        keys = {p["idempotency_key"] for p in prepared if p["idempotency_key"]}
        by_key = _runs_by_key(actor, keys) if keys else {}
        now = db_now()
        result: list[FlowRun] = []
        fresh: list[FlowRun] = []
        for p in prepared:
            key = p["idempotency_key"]
            if key in by_key:  # a known key, or one repeated within the call: that run
                result.append(by_key[key])
                continue
            run = _new_run(actor, flow, version, p, now, FlowRun.CreatedBy.API)
            fresh.append(run)
            result.append(run)
            if key:
                by_key[key] = run
        # A concurrent call may insert one of our keys first: that row is skipped here and the
        # other call's run is returned in its place.
        with_keys = any(r.idempotency_key for r in fresh)
        inserted = {r.pk for r in insert_scheduled_runs(fresh, now=now, ignore_conflicts=with_keys)}
        lost = {r.idempotency_key for r in fresh if r.pk not in inserted and r.idempotency_key}
        if lost:
            winners = _runs_by_key(actor, lost)
            result = [winners.get(r.idempotency_key, r) if r.idempotency_key in lost else r for r in result]
        return result


# --- manual actions ----------------------------------------------------------------------------------


def _locked(actor: Principal, flow_run: FlowRun) -> FlowRun:
    if flow_run.workspace_id != actor.workspace.pk:
        raise NotFound()
    run = FlowRun.objects.for_workspace(actor.workspace).select_for_update().filter(pk=flow_run.pk).first()
    if run is None:
        raise NotFound()
    return run


def _refuse(result: OrchestrationResult, what: str) -> None:
    if result.status is not SetStateStatus.ACCEPT:
        raise Conflict(f"Could not {what}: {result.reason}", code="transition_refused",
                       details={"state_type": result.state_type, "state_name": result.state_name,
                                "state_version": result.state_version, **result.details})


def _cancel_locked(actor: Principal, run: FlowRun) -> OrchestrationResult:
    if run.state_type in TERMINAL_STATES:
        raise Conflict(f"The run is already {run.state_type}.", code="run_finished",
                       details={"state_type": run.state_type})
    if run.state_type == StateType.CANCELLING:
        return OrchestrationResult(status=SetStateStatus.ACCEPT, state_type=run.state_type,
                                   state_name=run.state_name, state_version=run.state_version, run_id=run.pk,
                                   attempt=run.attempt)
    FlowRun.objects.for_workspace(actor.workspace).filter(pk=run.pk).update(cancellation_requested=True)
    held = run.state_type in (StateType.PENDING, StateType.RUNNING)
    state = (
        ProposedState(type=StateType.CANCELLING, name="Cancelling", message=f"Cancellation requested by {actor.label}")
        if held
        else ProposedState(type=StateType.CANCELLED, name="Cancelled", message=f"Cancelled by {actor.label}")
    )
    result = flow_run_set_state(actor=actor, flow_run_id=run.pk, state=state, workspace_id=run.workspace_id)
    if held and result.status is SetStateStatus.ACCEPT:
        live.cancel_requested(flow_run=run)  # the holding agent stops it within a second
    return result


@transaction.atomic
def flow_run_cancel(*, actor: Principal, flow_run: FlowRun) -> OrchestrationResult:
    """Cancel a run: an agent holding it (PENDING/RUNNING) is told to stop (CANCELLING; the agent
    confirms CANCELLED, or the reaper crashes it); a run nobody holds is CANCELLED at once."""
    with workspace_scope([actor.workspace.pk]):
        run = _locked(actor, flow_run)
        authorize(actor, "flow_run:update", run)
        result = _cancel_locked(actor, run)
        _refuse(result, "cancel the run")
        return result


def _downstream(edges: Iterable[dict[str, Any]], keys: set[str]) -> set[str]:
    children: dict[str, set[str]] = {}
    for edge in edges or []:
        if isinstance(edge, dict):
            children.setdefault(str(edge.get("upstream")), set()).add(str(edge.get("downstream")))
    found, stack = set(keys), list(keys)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


@transaction.atomic
def flow_run_restart(*, actor: Principal, flow_run: FlowRun) -> OrchestrationResult:
    """Re-run a FAILED, CRASHED or CANCELLED run as a new attempt (SCHEDULED "AwaitingRetry"). Task
    runs that did not complete, and every task downstream of them (the version's edges), go back
    to PENDING; completed upstream task runs are kept."""
    with workspace_scope([actor.workspace.pk]):
        run = _locked(actor, flow_run)
        authorize(actor, "flow_run:update", run)
        if run.state_type not in RESTARTABLE:
            raise Conflict(f"Only a FAILED, CRASHED or CANCELLED run can be restarted; this one is "
                           f"{run.state_type}.", code="not_restartable", details={"state_type": run.state_type})
        result = flow_run_set_state(
            actor=actor, flow_run_id=run.pk, workspace_id=run.workspace_id,
            state=ProposedState(type=StateType.SCHEDULED, name="AwaitingRetry",
                                message=f"Restarted by {actor.label}", details={"restart": True}),
        )
        _refuse(result, "restart the run")
        task_runs = list(TaskRun.objects.for_workspace(actor.workspace).filter(flow_run_id=run.pk)
                         .only("id", "task_key", "state_type"))
        failed = {t.task_key for t in task_runs if t.state_type != StateType.COMPLETED}
        edges = FlowVersion.objects.for_workspace(actor.workspace).filter(pk=run.flow_version_id) \
            .values_list("edges", flat=True).first()
        reset = _downstream(edges or [], failed)
        for task_run in task_runs:
            if task_run.task_key in reset and task_run.state_type != StateType.PENDING:
                task_run_set_state(
                    actor=actor, task_run_id=task_run.pk, workspace_id=run.workspace_id, policy=ForcePolicy(),
                    state=ProposedState(type=StateType.PENDING, name="Pending", message="Reset by a restart",
                                        details={"restart": True}),
                )
        return result


@transaction.atomic
def flow_run_mark(*, actor: Principal, flow_run: FlowRun, state_type: str, message: str = "") -> OrchestrationResult:
    """Set a run's state by hand ("mark as"), whatever it was; bookkeeping (times, slots, lease)
    follows the new state."""
    if state_type not in STATE_TYPES:
        raise InvalidInput(f"'{state_type}' is not a state type; use one of {', '.join(StateType.values)}.",
                           code="invalid_state", details={"state_type": ["Invalid."]})
    with workspace_scope([actor.workspace.pk]):
        run = _locked(actor, flow_run)
        authorize(actor, "flow_run:update", run)
        return _mark_locked(actor, run, state_type, message)


def _mark_locked(actor: Principal, run: FlowRun, state_type: str, message: str) -> OrchestrationResult:
    return flow_run_set_state(
        actor=actor, flow_run_id=run.pk, workspace_id=run.workspace_id, policy=ForcePolicy(),
        state=ProposedState(type=state_type, message=(message or f"Marked {state_type} by {actor.label}")[:2000],
                            details={"marked_by": actor.label}),
    )


@transaction.atomic
def flow_run_delete(*, actor: Principal, flow_run: FlowRun) -> None:
    """Delete a run with its task runs, states, logs and slots."""
    with workspace_scope([actor.workspace.pk]):
        run = _locked(actor, flow_run)
        authorize(actor, "flow_run:update", run)
        FlowRun.objects.for_workspace(actor.workspace).filter(pk=run.pk).delete()
        events.flow_run_deleted(run)


# --- bulk actions ------------------------------------------------------------------------------------


def bulk_run_filter(filters: Any) -> FlowRunFilter:
    """A bulk action's filters (raw JSON as stored on the record: ``flow_id``, ``state_type`` or
    ``state_types``, ``labels``, ``scheduled_before``, ``scheduled_after``) as a
    :class:`~orchestration.selectors.FlowRunFilter`; InvalidInput naming every bad filter."""
    if not isinstance(filters, dict):
        raise InvalidInput("filters must be an object.", details={"filters": ["Invalid."]})
    unknown = set(filters) - set(BULK_FILTERS)
    if unknown:
        raise InvalidInput(f"Unknown filters: {', '.join(sorted(unknown))}.",
                           details={f"filters.{k}": ["Unknown."] for k in sorted(unknown)})
    errors: dict[str, list[str]] = {}
    flow_id = None
    if filters.get("flow_id") is not None:
        try:
            flow_id = uuid.UUID(str(filters["flow_id"]))
        except ValueError:
            errors["filters.flow_id"] = ["Must be a UUID."]
    types: list[str] = []
    if filters.get("state_type") is not None:
        types.append(filters["state_type"])
    if filters.get("state_types") is not None:
        if not isinstance(filters["state_types"], list):
            errors["filters.state_types"] = ["Must be a list."]
        else:
            types += filters["state_types"]
    bad = [t for t in types if t not in STATE_TYPES]
    if bad:
        errors["filters.state_type"] = [f"Unknown state types: {', '.join(map(str, bad))}."]
    run_filter = FlowRunFilter(
        flow_id=flow_id,
        state_types=types or None,
        labels=_labels(filters.get("labels"), errors, "filters.labels"),
        scheduled_before=_when(filters.get("scheduled_before"), "filters.scheduled_before", errors),
        scheduled_after=_when(filters.get("scheduled_after"), "filters.scheduled_after", errors),
    )
    if errors:
        raise InvalidInput(_first_error(errors), code="invalid_filters", details=errors)
    return run_filter


def flow_run_bulk_action(
    *, actor: Principal, action: str, filters: dict[str, Any], state_type: str | None = None
) -> int:
    """Apply ``action`` to every run of the actor's workspace matching ``filters`` (at most 10,000
    per call) before returning; returns how many runs changed. ``cancel`` cancels unfinished runs,
    ``clear_late`` cancels SCHEDULED runs marked Late, ``mark`` sets ``state_type`` by hand. Works
    in small batches (:mod:`orchestration.services.bulk_actions`, which the API uses to run large
    selections in the background with progress)."""
    from orchestration.services.bulk_actions import bulk_action_create

    return bulk_action_create(actor=actor, action=action, filters=filters, state_type=state_type,
                              background=False).done


__all__ = [
    "MAX_BULK_RUNS",
    "bulk_run_filter",
    "flow_run_bulk_action",
    "flow_run_bulk_create",
    "flow_run_cancel",
    "flow_run_create",
    "flow_run_delete",
    "flow_run_mark",
    "flow_run_restart",
]
