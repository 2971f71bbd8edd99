"""Flow runs as people and integrations see them: create (one or 5,000 at once), cancel, restart,
mark as, delete and bulk actions on a filter.

Every function takes the acting :class:`Principal`, authorizes with the role matrix, and scopes
itself to the actor's workspace. State changes go through the engine's entry point
(``orchestration.engine``); nothing here assigns a run's state, except the first SCHEDULED state
written with the run at creation (state_version 1 and its history row, in the same transaction).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from accounts.authz import NotFound, Principal, authorize
from core.errors import Conflict, InvalidInput
from core.events import publish
from core.tenancy import workspace_scope
from orchestration.engine import (
    ForcePolicy,
    OrchestrationResult,
    ProposedState,
    SetStateStatus,
    db_now,
    flow_run_set_state,
    task_run_set_state,
)
from orchestration.models import (
    TERMINAL_STATES,
    Flow,
    FlowRun,
    FlowRunState,
    FlowVersion,
    Schedule,
    StateType,
    TaskRun,
)
from orchestration.services import live

MAX_PARAMETERS_BYTES = 512 * 1024  # A1: parameters are small metadata, never data
MAX_BULK_RUNS = 5_000
MAX_LABELS = 100
MAX_LABEL_LENGTH = 100
MAX_NAME = 200
MAX_IDEMPOTENCY_KEY = 200
PARAMETER_TYPES = ("str", "int", "float", "bool", "list", "dict", "any")
RESTARTABLE = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


# --- validation -----------------------------------------------------------------------------------


def _type_ok(kind: str, value: Any) -> bool:
    if kind not in PARAMETER_TYPES or kind == "any" or value is None:
        return True
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "bool": bool, "list": list, "dict": dict}[kind])


def validate_parameters(schema: list[dict[str, Any]], parameters: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check ``parameters`` against a version's parameter schema. Returns the parameters with the
    defaults of omitted optional ones filled in, and the errors by field (empty when valid)."""
    errors: dict[str, list[str]] = {}
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        return {}, {"parameters": ["Must be an object of parameter names to values."]}
    try:
        size = len(json.dumps(parameters, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return {}, {"parameters": ["Must be JSON."]}
    if size > MAX_PARAMETERS_BYTES:
        return {}, {"parameters": [f"At most {MAX_PARAMETERS_BYTES // 1024} KB of JSON ({size} bytes given); "
                                   "pass references to data, not data."]}
    specs = {p["name"]: p for p in schema or [] if isinstance(p, dict) and "name" in p}
    clean: dict[str, Any] = {}
    for name in parameters:
        if name not in specs:
            errors[f"parameters.{name}"] = [f"Unknown parameter '{name}'; the flow takes: "
                                            f"{', '.join(sorted(specs)) or 'none'}."]
    for name, spec in specs.items():
        kind = spec.get("type", "any")
        if name in parameters:
            value = parameters[name]
            if not _type_ok(kind, value):
                errors[f"parameters.{name}"] = [f"Must be of type '{kind}', got {type(value).__name__}."]
            clean[name] = value
        elif spec.get("required"):
            errors[f"parameters.{name}"] = ["This parameter is required."]
        elif "default" in spec:
            clean[name] = spec.get("default")
    return clean, errors


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


def _run_name(flow: Flow) -> str:
    return f"{flow.name[:180]}-{uuid.uuid4().hex[:8]}"


def active_version(flow: Flow) -> FlowVersion:
    """The pinned version, else the newest unarchived one; a flow without one cannot run."""
    if flow.pinned_version_id is not None:
        version = FlowVersion.objects.for_workspace(flow.workspace_id).filter(pk=flow.pinned_version_id).first()
    else:
        version = (
            FlowVersion.objects.for_workspace(flow.workspace_id)
            .filter(flow=flow, is_archived=False)
            .order_by("-version")
            .first()
        )
    if version is None:
        raise Conflict("The flow has no active version to run; register or unarchive one.", code="no_active_version")
    return version


def _prepare(
    flow: Flow, version: FlowVersion, spec: dict[str, Any], errors: dict[str, list[str]], prefix: str = ""
) -> dict[str, Any]:
    parameters, param_errors = validate_parameters(version.parameters, spec.get("parameters"))
    errors.update({prefix + k: v for k, v in param_errors.items()})
    labels = _labels(spec.get("labels"), errors, prefix + "labels")
    name = _text(spec.get("name"), MAX_NAME, prefix + "name", errors)
    key = _text(spec.get("idempotency_key"), MAX_IDEMPOTENCY_KEY, prefix + "idempotency_key", errors)
    when = _when(spec.get("scheduled_start"), prefix + "scheduled_start", errors)
    return {
        "parameters": parameters,
        "labels": labels if labels is not None else list(version.labels or []),
        "name": name or _run_name(flow),
        "idempotency_key": key,
        "scheduled_start": when,
    }


def _new_run(
    actor: Principal, flow: Flow, version: FlowVersion, prepared: dict[str, Any], now: dt.datetime,
    created_by_kind: str, schedule: Schedule | None,
) -> FlowRun:
    return FlowRun(
        id=uuid.uuid4(),
        workspace_id=flow.workspace_id,
        flow=flow,
        flow_version=version,
        name=prepared["name"],
        parameters=prepared["parameters"],
        labels=prepared["labels"],
        idempotency_key=prepared["idempotency_key"],
        created_by_kind=created_by_kind,
        created_by_user=actor.user,
        schedule=schedule,
        scheduled_start=prepared["scheduled_start"] or now,
        state_type=StateType.SCHEDULED,
        state_name="Scheduled",
        state_timestamp=now,
        state_version=1,  # the first state, written with the run (its history row below)
        created_at=now,
    )


def _first_state(run: FlowRun, now: dt.datetime) -> FlowRunState:
    return FlowRunState(
        workspace_id=run.workspace_id, flow_run_id=run.pk, type=StateType.SCHEDULED, name="Scheduled",
        timestamp=now, details={"scheduled_start": run.scheduled_start.isoformat()},
    )


def _created_event(run: FlowRun) -> None:
    publish(
        workspace_id=run.workspace_id,
        type="flow_run.created",
        data={"id": str(run.pk), "flow_id": str(run.flow_id), "name": run.name, "state_type": run.state_type,
              "scheduled_start": run.scheduled_start.isoformat()},
    )


def _own_flow(actor: Principal, flow: Flow) -> Flow:
    if flow.workspace_id != actor.workspace.pk:
        raise NotFound()
    return flow


# --- create -----------------------------------------------------------------------------------------


@transaction.atomic
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
) -> tuple[FlowRun, bool]:
    """Create a run of ``flow`` (its active version unless ``flow_version`` is given), SCHEDULED at
    ``scheduled_start`` (default: now). A known ``idempotency_key`` returns the existing run and
    ``created=False``; five concurrent identical creates make one row."""
    _own_flow(actor, flow)
    with workspace_scope([actor.workspace.pk]):
        authorize(actor, "flow_run:create", flow)
        if created_by_kind not in FlowRun.CreatedBy.values:
            raise InvalidInput(f"created_by_kind must be one of {', '.join(FlowRun.CreatedBy.values)}.",
                               details={"created_by_kind": ["Invalid."]})
        if idempotency_key is not None:
            existing = _by_key(actor, idempotency_key)
            if existing is not None:
                return existing, False
        if flow_version is not None:
            if flow_version.flow_id != flow.pk:
                raise InvalidInput("That version belongs to another flow.", details={"flow_version": ["Invalid."]})
            version = flow_version
        else:
            version = active_version(flow)
        errors: dict[str, list[str]] = {}
        prepared = _prepare(flow, version, {
            "parameters": parameters, "labels": labels, "scheduled_start": scheduled_start,
            "idempotency_key": idempotency_key, "name": name,
        }, errors)
        if errors:
            raise InvalidInput(_first_error(errors), code="invalid_run", details=errors)
        now = db_now()
        run = _new_run(actor, flow, version, prepared, now, created_by_kind, schedule)
        try:
            with transaction.atomic():
                FlowRun.objects.unscoped().bulk_create([run])
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = _by_key(actor, prepared["idempotency_key"])
            if existing is None:
                raise
            return existing, False
        FlowRunState.objects.unscoped().bulk_create([_first_state(run, now)])
        _created_event(run)
        live.runs_available([run], now=now)
        return run, True


def _by_key(actor: Principal, key: str) -> FlowRun | None:
    return FlowRun.objects.for_workspace(actor.workspace).filter(idempotency_key=key.strip()).first()


def _first_error(errors: dict[str, list[str]]) -> str:
    path, messages = next(iter(errors.items()))
    more = f" ({len(errors) - 1} more errors in details)" if len(errors) > 1 else ""
    return f"{path}: {messages[0]}{more}"


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
        version = active_version(flow)
        errors: dict[str, list[str]] = {}
        prepared = []
        for i, spec in enumerate(runs):
            if not isinstance(spec, dict):
                errors[f"runs[{i}]"] = ["Must be an object."]
                continue
            unknown = set(spec) - {"parameters", "labels", "scheduled_start", "idempotency_key", "name"}
            if unknown:
                errors[f"runs[{i}]"] = [f"Unknown fields: {', '.join(sorted(unknown))}."]
            prepared.append(_prepare(flow, version, spec, errors, prefix=f"runs[{i}]."))
        if errors:
            raise InvalidInput(_first_error(errors), code="invalid_run", details=errors)
        keys = [p["idempotency_key"] for p in prepared if p["idempotency_key"]]
        existing = {
            run.idempotency_key: run
            for run in FlowRun.objects.for_workspace(actor.workspace).filter(idempotency_key__in=keys)
        } if keys else {}
        now = db_now()
        result: list[FlowRun] = []
        fresh: list[FlowRun] = []
        seen: dict[str, FlowRun] = {}
        for p in prepared:
            key = p["idempotency_key"]
            if key and key in existing:
                result.append(existing[key])
            elif key and key in seen:
                result.append(seen[key])
            else:
                run = _new_run(actor, flow, version, p, now, FlowRun.CreatedBy.API, None)
                if key:
                    seen[key] = run
                fresh.append(run)
                result.append(run)
        # A concurrent call may insert one of our keys first: those rows are skipped here and the
        # other call's run is returned in their place.
        FlowRun.objects.unscoped().bulk_create(fresh, batch_size=1000, ignore_conflicts=bool(seen))
        if seen:
            inserted = set(
                FlowRun.objects.for_workspace(actor.workspace)
                .filter(pk__in=[r.pk for r in fresh]).values_list("pk", flat=True)
            )
            lost = [r for r in fresh if r.pk not in inserted]
            if lost:
                winners = {r.idempotency_key: r for r in FlowRun.objects.for_workspace(actor.workspace)
                           .filter(idempotency_key__in=[r.idempotency_key for r in lost])}
                result = [winners.get(r.idempotency_key, r) if r.pk not in inserted and r in lost else r
                          for r in result]
                fresh = [r for r in fresh if r.pk in inserted]
        FlowRunState.objects.unscoped().bulk_create([_first_state(r, now) for r in fresh], batch_size=1000)
        if fresh:
            publish(workspace_id=actor.workspace.pk, type="flow_run.created",
                    data={"flow_id": str(flow.pk), "count": len(fresh), "ids": [str(r.pk) for r in fresh[:100]]})
            live.runs_available(fresh, now=now)
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
    if state_type not in StateType.values:
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
        run_id = run.pk
        FlowRun.objects.for_workspace(actor.workspace).filter(pk=run_id).delete()
        publish(workspace_id=actor.workspace.pk, type="flow_run.deleted", data={"id": str(run_id)})


# --- bulk actions ------------------------------------------------------------------------------------


def _filtered(actor: Principal, filters: dict[str, Any]) -> QuerySet[FlowRun]:
    if not isinstance(filters, dict):
        raise InvalidInput("filters must be an object.", details={"filters": ["Invalid."]})
    allowed = {"flow_id", "state_type", "state_types", "labels", "scheduled_before", "scheduled_after"}
    unknown = set(filters) - allowed
    if unknown:
        raise InvalidInput(f"Unknown filters: {', '.join(sorted(unknown))}.",
                           details={f"filters.{k}": ["Unknown."] for k in sorted(unknown)})
    errors: dict[str, list[str]] = {}
    qs = FlowRun.objects.for_workspace(actor.workspace)
    if filters.get("flow_id") is not None:
        try:
            qs = qs.filter(flow_id=uuid.UUID(str(filters["flow_id"])))
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
    bad = [t for t in types if t not in StateType.values]
    if bad:
        errors["filters.state_type"] = [f"Unknown state types: {', '.join(map(str, bad))}."]
    elif types:
        qs = qs.filter(state_type__in=types)
    labels = _labels(filters.get("labels"), errors, "filters.labels")
    if labels:
        qs = qs.filter(labels__contains=labels)
    before = _when(filters.get("scheduled_before"), "filters.scheduled_before", errors)
    after = _when(filters.get("scheduled_after"), "filters.scheduled_after", errors)
    if before is not None:
        qs = qs.filter(scheduled_start__lt=before)
    if after is not None:
        qs = qs.filter(scheduled_start__gte=after)
    if errors:
        raise InvalidInput(_first_error(errors), code="invalid_filters", details=errors)
    return qs


@transaction.atomic
def _visible_to(actor: Principal, runs: Any) -> Any:
    """Leave out runs of restricted projects not shared with the actor (Owners and Admins see all)."""
    from django.db.models import Q
    from guardian.shortcuts import get_objects_for_user

    from accounts.models import ApiKey, Role
    from orchestration.models import Project

    if actor.role in (Role.OWNER, Role.ADMIN):
        return runs
    shared: list[Any] = []
    if actor.user is not None and (actor.api_key is None or actor.api_key.kind == ApiKey.Kind.USER):
        projects = Project.objects.for_workspace(actor.workspace).filter(is_restricted=True)
        shared = list(
            get_objects_for_user(
                actor.user, ["orchestration.view_project", "orchestration.manage_project"], klass=projects,
                any_perm=True, accept_global_perms=False, with_superuser=False,
            ).values_list("pk", flat=True)
        )
    return runs.filter(Q(flow__project__is_restricted=False) | Q(flow__project__in=shared))


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
    "MAX_PARAMETERS_BYTES",
    "active_version",
    "flow_run_bulk_action",
    "flow_run_bulk_create",
    "flow_run_cancel",
    "flow_run_create",
    "flow_run_delete",
    "flow_run_mark",
    "flow_run_restart",
    "validate_parameters",
]
