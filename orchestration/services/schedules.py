"""Schedules of a flow: create, change, pause/resume and delete.

A schedule only describes *when* a flow runs; the scheduler tick
(:func:`orchestration.services.scheduler.schedule_due_runs`) turns it into runs. When a schedule
changes, is paused or is deleted, its future runs that no agent holds yet are deleted here, in the
same transaction, and the next tick materialises the right ones again; ``updated_at`` moves to the
change so that the tick never back-fills the time before it (a resumed schedule does not catch up
on the pause).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone as django_timezone

from accounts.authz import Principal, authorize
from accounts.services.audit import audit_record
from core.errors import InvalidInput
from core.tenancy import workspace_scope
from orchestration import events
from orchestration import schedules as timemaths
from orchestration.models import Flow, FlowRun, Schedule, StateType
from orchestration.selectors.flows import flow_version_for_new_run
from orchestration.services.parameters import MAX_PARAMETERS_BYTES, validate_parameters

MAX_SCHEDULES_PER_FLOW = 20

_SPEC_FIELDS = ("kind", "interval_seconds", "anchor_date", "cron", "rrule", "timezone", "start_date", "end_date")
UPDATABLE_FIELDS = frozenset({*_SPEC_FIELDS, "parameters", "is_active"})


def _validate_parameters(flow: Flow, parameters: Any) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidInput("Schedule parameters must be an object of name → value.",
                           details={"parameters": ["Not an object."]})
    if len(json.dumps(parameters, default=str)) > MAX_PARAMETERS_BYTES:
        raise InvalidInput("Schedule parameters are too large (512 KB at most).", code="parameters_too_large",
                           details={"parameters": ["Too large."]})
    version = flow_version_for_new_run(flow)
    if version is not None:
        # The same check a run's parameters get: unknown names, wrong types, missing required ones.
        _, errors = validate_parameters(version.parameters, parameters)
        if errors:
            unknown = sorted(k.split(".", 1)[1] for k, v in errors.items() if v[0].startswith("Unknown"))
            raise InvalidInput(
                f"Unknown parameter(s) for flow '{flow.name}': {', '.join(unknown)}." if unknown
                else f"The schedule's parameters do not fit flow '{flow.name}': " + "; ".join(
                    f"{k}: {v[0]}" for k, v in sorted(errors.items())),
                code="unknown_parameters" if unknown else "invalid_parameters",
                details={"parameters": {k.split(".", 1)[-1]: v for k, v in errors.items()}},
            )
    return dict(parameters)


def _normalise(fields: dict[str, Any]) -> dict[str, Any]:
    fields["cron"] = (fields.get("cron") or "").strip()
    fields["rrule"] = (fields.get("rrule") or "").strip()
    fields["timezone"] = (fields.get("timezone") or "").strip()
    if fields["kind"] in ("interval", "rrule") and fields.get("anchor_date") is None:
        # Without an anchor the grid starts at the schedule's start date, or at this minute.
        fields["anchor_date"] = fields.get("start_date") or django_timezone.now().replace(second=0, microsecond=0)
    spec: dict[str, Any] = {k: fields.get(k) for k in _SPEC_FIELDS}
    timemaths.validate_spec(timemaths.ScheduleSpec(**spec))
    return fields


def _delete_unclaimed_future_runs(schedule: Schedule) -> int:
    """Future SCHEDULED runs of the schedule that no agent holds; the next tick re-materialises."""
    runs = FlowRun.objects.for_workspace(schedule.workspace_id).filter(
        schedule=schedule, state_type=StateType.SCHEDULED, agent__isnull=True, scheduled_start__gt=Now()
    )
    deleted_ids = [str(pk) for pk in runs.values_list("pk", flat=True)]
    if deleted_ids:
        FlowRun.objects.for_workspace(schedule.workspace_id).filter(pk__in=deleted_ids).delete()
        events.flow_run_deleted_by_schedule(schedule, deleted_ids)
    return len(deleted_ids)


# --- the audit log ------------------------------------------------------------------------------


def _loggable(value: Any) -> Any:
    """A field's value as the audit log's JSON keeps it (dates as ISO 8601 text)."""
    return value.isoformat() if isinstance(value, datetime) else value


def _settings(schedule: Schedule) -> dict[str, Any]:
    """What the schedule was set to: the fields that have a value, to read in the log."""
    values = {k: getattr(schedule, k) for k in (*_SPEC_FIELDS, "parameters", "is_active")}
    return {k: _loggable(v) for k, v in values.items() if v not in (None, "", {})}


def _label(schedule: Schedule, flow: Flow) -> str:
    """'nightly: cron 0 9 * * *': the flow and the clock, since a schedule has no name."""
    clock = {
        "interval": f"every {schedule.interval_seconds} s",
        "cron": f"cron {schedule.cron}",
        "rrule": f"rrule {schedule.rrule}",
    }.get(schedule.kind, schedule.kind)
    return f"{flow.name}: {clock}"


def _audit(actor: Principal, schedule: Schedule, flow: Flow, action: str, data: dict[str, Any]) -> None:
    audit_record(workspace=actor.workspace, action=action, target=schedule, actor=actor,
                 target_label=_label(schedule, flow), data=data)


@transaction.atomic
def schedule_create(
    *,
    actor: Principal,
    flow: Flow,
    kind: str,
    interval_seconds: int | None = None,
    anchor_date: datetime | None = None,
    cron: str = "",
    rrule: str = "",
    timezone: str = "UTC",  # noqa: A002 - the field's name
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    parameters: dict[str, Any] | None = None,
    is_active: bool = True,
) -> Schedule:
    """A new schedule for ``flow``; its runs appear at the next scheduler tick."""
    authorize(actor, "flow:register", flow)
    with workspace_scope([actor.workspace.pk]):
        fields = _normalise({
            "kind": kind, "interval_seconds": interval_seconds, "anchor_date": anchor_date, "cron": cron,
            "rrule": rrule, "timezone": timezone, "start_date": start_date, "end_date": end_date,
        })
        fields["parameters"] = _validate_parameters(flow, parameters)
        if Schedule.objects.for_workspace(flow.workspace_id).filter(flow=flow).count() >= MAX_SCHEDULES_PER_FLOW:
            raise InvalidInput(f"A flow has at most {MAX_SCHEDULES_PER_FLOW} schedules.", code="too_many_schedules")
        schedule = Schedule.objects.unscoped().create(
            workspace_id=flow.workspace_id, flow=flow, is_active=bool(is_active), **fields
        )
        _audit(actor, schedule, flow, "schedule.created", _settings(schedule))
        events.schedule_created(schedule)
    return schedule


@transaction.atomic
def schedule_update(*, actor: Principal, schedule: Schedule, **changes: Any) -> Schedule:
    """Change some of a schedule's fields (see :data:`UPDATABLE_FIELDS`). Its unclaimed future runs
    are deleted when anything that decides them changes."""
    authorize(actor, "flow:register", schedule)
    unknown = sorted(set(changes) - UPDATABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"These schedule fields cannot be changed: {', '.join(unknown)}.",
                           details={name: ["Not updatable."] for name in unknown})
    with workspace_scope([actor.workspace.pk]):
        schedule = Schedule.objects.for_workspace(schedule.workspace_id).select_for_update().get(pk=schedule.pk)
        fields = {k: getattr(schedule, k) for k in _SPEC_FIELDS}
        if "kind" in changes and changes["kind"] != schedule.kind:
            # Switching kind drops the other kinds' settings unless they are given too.
            fields.update(interval_seconds=None, cron="", rrule="")
        fields.update({k: v for k, v in changes.items() if k in _SPEC_FIELDS})
        fields = _normalise(fields)
        flow = Flow.objects.for_workspace(schedule.workspace_id).get(pk=schedule.flow_id)
        if "parameters" in changes:
            fields["parameters"] = _validate_parameters(flow, changes["parameters"])
        if "is_active" in changes:
            fields["is_active"] = bool(changes["is_active"])
        changed = [k for k, v in fields.items() if getattr(schedule, k) != v]
        if not changed:
            return schedule
        before = {k: _loggable(getattr(schedule, k)) for k in changed}
        for key in changed:
            setattr(schedule, key, fields[key])
        schedule.updated_at = django_timezone.now()
        schedule.save(update_fields=[*changed, "updated_at"])
        removed = _delete_unclaimed_future_runs(schedule)
        if changed == ["is_active"]:
            # Pausing and resuming are what people look for in the log, so they get their own names.
            _audit(actor, schedule, flow, "schedule.resumed" if schedule.is_active else "schedule.paused",
                   {"future_runs_removed": removed} if removed else {})
        else:
            _audit(actor, schedule, flow, "schedule.updated",
                   {k: [before[k], _loggable(getattr(schedule, k))] for k in changed})
        events.schedule_updated(schedule)
    return schedule


def schedule_set_active(*, actor: Principal, schedule: Schedule, is_active: bool) -> Schedule:
    """Pause (``False``: unclaimed future runs are deleted) or resume (no catch-up on the pause)."""
    return schedule_update(actor=actor, schedule=schedule, is_active=is_active)


@transaction.atomic
def schedule_delete(*, actor: Principal, schedule: Schedule) -> None:
    """Delete a schedule and its unclaimed future runs; its past runs stay (without a schedule)."""
    authorize(actor, "flow:register", schedule)
    with workspace_scope([actor.workspace.pk]):
        removed = _delete_unclaimed_future_runs(schedule)
        flow = Flow.objects.for_workspace(schedule.workspace_id).get(pk=schedule.flow_id)
        _audit(actor, schedule, flow, "schedule.deleted",
               {**_settings(schedule), **({"future_runs_removed": removed} if removed else {})})
        events.schedule_deleted(schedule)
        Schedule.objects.for_workspace(schedule.workspace_id).filter(pk=schedule.pk).delete()


REGISTRATION_CLOCK_KEYS = {
    "kind", "interval_seconds", "anchor_date", "cron", "rrule", "timezone", "start_date", "end_date", "parameters",
}


def _clock_dates(clock: dict[str, Any], index: int) -> dict[str, Any]:
    from django.utils.dateparse import parse_datetime

    values: dict[str, Any] = {}
    for key in ("anchor_date", "start_date", "end_date"):
        raw = clock.get(key)
        if raw in (None, ""):
            continue
        parsed = parse_datetime(raw) if isinstance(raw, str) else None
        if parsed is None or parsed.tzinfo is None:
            raise InvalidInput(
                f"schedule.clocks[{index}].{key} must be an ISO 8601 date-time with an offset.",
                code="invalid_schedule", details={f"schedule.clocks[{index}].{key}": ["Invalid."]},
            )
        values[key] = parsed
    return values


@transaction.atomic
def schedules_sync_from_registration(*, actor: Principal, flow: Flow, spec: dict[str, Any] | None) -> list[Schedule]:
    """Make the flow's registered schedules match ``spec`` (the ``schedule`` of newly registered
    metadata): ``{"clocks": [clock, ...]}`` or one clock, each clock being the fields of
    :func:`schedule_create` (``kind`` plus its expression). Schedules made through the API are left
    alone; the previous registered ones are deleted (with their future unclaimed runs)."""
    clocks: Any = []
    if spec:
        clocks = spec.get("clocks", [spec])
    if not isinstance(clocks, list):
        raise InvalidInput("schedule.clocks must be a list of clocks.", code="invalid_schedule",
                           details={"schedule.clocks": ["Invalid."]})
    for old in Schedule.objects.for_workspace(actor.workspace).filter(flow=flow, from_registration=True):
        schedule_delete(actor=actor, schedule=old)
    created = []
    for index, clock in enumerate(clocks):
        if not isinstance(clock, dict) or set(clock) - REGISTRATION_CLOCK_KEYS or "kind" not in clock:
            raise InvalidInput(
                f"schedule.clocks[{index}] must be an object with 'kind' and only these fields: "
                f"{', '.join(sorted(REGISTRATION_CLOCK_KEYS))}.",
                code="invalid_schedule", details={f"schedule.clocks[{index}]": ["Invalid."]},
            )
        fields = {k: v for k, v in clock.items() if k not in ("anchor_date", "start_date", "end_date")}
        schedule = schedule_create(actor=actor, flow=flow, **fields, **_clock_dates(clock, index))
        schedule.from_registration = True
        schedule.save(update_fields=["from_registration"])
        created.append(schedule)
    return created
