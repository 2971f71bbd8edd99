"""Incidents: opening one per (policy, subject), adding runs to it, resolving it, and what people do
with it (acknowledge, snooze, resolve by hand). Every change writes a timeline row
(:class:`~orchestration.alerts.models.IncidentEvent`) and a live event (``incident.*``); openings
and resolutions queue one notification per channel (``delivery.queue_incident_notifications``).

**Opened once.** :func:`open_or_update` INSERTs the incident in a savepoint; the partial unique
constraint ``incident_one_open_per_subject`` refuses a second open incident for the same (policy,
subject), so of two evaluators running at once one opens it (and queues the notifications, and
runs the breach action) and the other finds it open and only adds runs it lacks.

**Resolved once.** :func:`resolve_cleared` and :func:`incident_resolve` move the incident to
``resolved`` with a conditional UPDATE (``status <> 'resolved'``): only the caller that changed the
row writes the timeline row and queues the "resolved" notification.

**A manual resolve holds.** Resolving by hand while the condition still holds marks the resolved
incident ``details["hold_until_clear"]``; the evaluator does not open the same (policy, subject)
again until it has seen the condition clear once (and then drops the mark).

**Snooze.** A snoozed incident is ``acknowledged`` with ``snoozed_until``; once that passes the
evaluator's tick (:func:`unsnooze_due`) makes it ``open`` again (timeline ``unsnoozed``). No
notification is sent again for either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.authz import Principal, authorize
from accounts.services.audit import audit_record
from core.errors import Conflict, InvalidInput
from core.tenancy import workspace_scope
from orchestration import events
from orchestration.engine import db_now
from orchestration.models import Flow, Project

from .models import Incident, IncidentEvent, IncidentRun, SlaPolicy

logger = logging.getLogger(__name__)

HOLD_KEY = "hold_until_clear"
MAX_SNOOZE_MINUTES = 7 * 24 * 60
ACTIVE = (Incident.Status.OPEN, Incident.Status.ACKNOWLEDGED)


@dataclass
class Breach:
    """A broken promise the evaluator found: what to open (or keep open) for one (policy, subject)."""

    policy: SlaPolicy
    subject_key: str
    title: str
    cause: str
    flow_id: Any = None
    severity: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    run_ids: list[Any] = field(default_factory=list)
    # The runs the policy's action applies to (none for a warning).
    act: bool = True

    def add_runs(self, run_ids: Iterable[Any]) -> None:
        seen = set(self.run_ids)
        for pk in run_ids:
            if pk not in seen:
                seen.add(pk)
                self.run_ids.append(pk)


# --- shared steps ----------------------------------------------------------------------------------


def _timeline(incident: Incident, kind: str, message: str, *, actor: str = "", at: datetime | None = None,
              details: dict[str, Any] | None = None) -> IncidentEvent:
    event: IncidentEvent = IncidentEvent.objects.unscoped().create(
        workspace_id=incident.workspace_id, incident_id=incident.pk, kind=kind, message=message[:4000],
        actor=actor[:254], details=details or {}, at=at or db_now(),
    )
    return event


def _run_count(incident: Incident) -> int:
    count: int = IncidentRun.objects.for_workspace(incident.workspace_id).filter(incident_id=incident.pk).count()
    return count


def _project_id(incident: Incident) -> Any:
    """The project the incident is about, for the live socket's restricted-project filter when it
    names no flow (a correlated cause or an agent policy of a project-scoped policy)."""
    if incident.flow_id is not None or incident.policy_id is None:
        return None
    return (SlaPolicy.objects.for_workspace(incident.workspace_id).filter(pk=incident.policy_id)
            .values_list("project_id", flat=True).first())


def _announce(incident: Incident, which: str, run_count: int | None = None) -> None:
    count = _run_count(incident) if run_count is None else run_count
    builder = {"opened": events.incident_opened, "updated": events.incident_updated,
               "resolved": events.incident_resolved}[which]
    builder(incident, run_count=count, project_id=_project_id(incident))


def announce_update(incident: Incident) -> None:
    """Tell open pages that an incident changed in a way they show (a notification was sent or
    finally failed: its timeline gained a row)."""
    _announce(incident, "updated")


def _notify(incident: Incident, event: str) -> None:
    """Queue the incident's "opened" or "resolved" notifications (one per channel, sent after commit)."""
    from orchestration.alerts.delivery import queue_incident_notifications

    queue_incident_notifications(incident, event)


def _add_runs(incident: Incident, run_ids: Iterable[Any], at: datetime) -> list[Any]:
    """Add the runs the incident does not list yet; returns those added. The caller holds the
    incident's row lock (or just inserted it)."""
    wanted = list(dict.fromkeys(run_ids))
    if not wanted:
        return []
    listed = set(IncidentRun.objects.for_workspace(incident.workspace_id)
                 .filter(incident_id=incident.pk, flow_run_id__in=wanted).values_list("flow_run_id", flat=True))
    new = [pk for pk in wanted if pk not in listed]
    IncidentRun.objects.unscoped().bulk_create(
        [IncidentRun(workspace_id=incident.workspace_id, incident_id=incident.pk, flow_run_id=pk, added_at=at)
         for pk in new],
        ignore_conflicts=True, batch_size=1000,
    )
    return new


# --- the evaluator's side -------------------------------------------------------------------------


def open_or_update(breach: Breach, *, now: datetime) -> str:
    """Open the incident for ``breach`` or, when one is already open for its (policy, subject),
    add the runs it does not list yet. Returns ``"opened"``, ``"updated"`` (runs added) or
    ``"unchanged"``. Runs in its own transaction, scoped to the policy's workspace."""
    policy = breach.policy
    with workspace_scope([policy.workspace_id]):
        incident = Incident(
            workspace_id=policy.workspace_id, policy_id=policy.pk, policy_name=policy.name[:200], kind=policy.kind,
            subject_key=breach.subject_key[:300], flow_id=breach.flow_id, severity=breach.severity or policy.severity,
            title=breach.title[:500], cause=breach.cause, details=breach.details, status=Incident.Status.OPEN,
            opened_at=now, last_evaluated_at=now,
        )
        try:
            with transaction.atomic():
                incident.save(force_insert=True)
        except IntegrityError:
            return _update_open(breach, now=now)
        _add_runs(incident, breach.run_ids, now)
        _timeline(incident, IncidentEvent.Kind.OPENED, breach.cause or breach.title, at=now,
                  details={"subject": breach.subject_key, "runs": len(breach.run_ids)})
        _announce(incident, "opened", run_count=len(set(breach.run_ids)))
        _notify(incident, "opened")
        if breach.act:
            from .actions import apply_breach_action

            apply_breach_action(policy, incident, breach.run_ids, opening=True, now=now)
    return "opened"


def _update_open(breach: Breach, *, now: datetime) -> str:
    policy = breach.policy
    incident = (Incident.objects.for_workspace(policy.workspace_id).select_for_update()
                .filter(policy_id=policy.pk, subject_key=breach.subject_key[:300]).exclude(
                    status=Incident.Status.RESOLVED).first())
    if incident is None:
        return "unchanged"  # resolved meanwhile; the next pass opens it again if it still holds
    added = _add_runs(incident, breach.run_ids, now)
    if not added:
        return "unchanged"
    Incident.objects.for_workspace(policy.workspace_id).filter(pk=incident.pk).update(last_evaluated_at=now)
    noun = "run" if len(added) == 1 else "runs"
    _timeline(incident, IncidentEvent.Kind.RUNS_ADDED, f"{len(added)} more {noun} affected by the same cause.",
              at=now, details={"run_ids": [str(pk) for pk in added[:100]], "count": len(added)})
    _announce(incident, "updated")
    if breach.act:
        from .actions import apply_breach_action

        apply_breach_action(policy, incident, added, opening=False, now=now)
    return "updated"


def add_runs(breach: Breach, *, now: datetime) -> str:
    """Add runs to the open incident of ``breach``'s (policy, subject) (it was seen open)."""
    with workspace_scope([breach.policy.workspace_id]):
        return _update_open(breach, now=now)


def resolve_cleared(incident: Incident, *, reason: str, now: datetime) -> bool:
    """Resolve an open incident whose condition cleared (by itself: ``resolved_by`` stays empty).
    False when another evaluator or a person resolved it first."""
    with workspace_scope([incident.workspace_id]):
        changed = (Incident.objects.for_workspace(incident.workspace_id).filter(pk=incident.pk)
                   .exclude(status=Incident.Status.RESOLVED)
                   .update(status=Incident.Status.RESOLVED, resolved_at=now, snoozed_until=None, last_evaluated_at=now))
        if not changed:
            return False
        incident.status, incident.resolved_at, incident.snoozed_until = Incident.Status.RESOLVED, now, None
        _timeline(incident, IncidentEvent.Kind.RESOLVED, reason, at=now)
        _announce(incident, "resolved")
        _notify(incident, "resolved")
    return True


def release_hold(incident_id: Any, workspace_id: Any) -> None:
    """The condition a manual resolve held back has cleared: the subject may open again."""
    with workspace_scope([workspace_id]):
        incident = Incident.objects.for_workspace(workspace_id).select_for_update().filter(pk=incident_id).first()
        if incident is None or not incident.details.get(HOLD_KEY):
            return
        details = {k: v for k, v in incident.details.items() if k != HOLD_KEY}
        Incident.objects.for_workspace(workspace_id).filter(pk=incident_id).update(details=details)


def unsnooze_due(*, now: datetime, workspace_ids: Iterable[Any] | None = None) -> int:
    """Snoozed incidents whose time is up become open again (timeline ``unsnoozed``, an
    ``incident.updated`` event, no notification). Returns how many."""
    from core.tenancy import rls_bypass

    with transaction.atomic(), rls_bypass():
        due = Incident.objects.unscoped().filter(status=Incident.Status.ACKNOWLEDGED, snoozed_until__lte=now)
        if workspace_ids is not None:
            due = due.filter(workspace_id__in=list(workspace_ids))
        rows = list(due.values_list("pk", "workspace_id"))
    woken = 0
    for pk, workspace_id in rows:
        with workspace_scope([workspace_id]):
            changed = (Incident.objects.for_workspace(workspace_id)
                       .filter(pk=pk, status=Incident.Status.ACKNOWLEDGED, snoozed_until__lte=now)
                       .update(status=Incident.Status.OPEN, snoozed_until=None, acknowledged_at=None,
                               acknowledged_by=""))
            if not changed:
                continue
            incident = Incident.objects.for_workspace(workspace_id).get(pk=pk)
            _timeline(incident, IncidentEvent.Kind.UNSNOOZED, "The snooze ended; the incident is open again.", at=now)
            _announce(incident, "updated")
            woken += 1
    return woken


# --- people's actions --------------------------------------------------------------------------------


def _check(actor: Principal, incident: Incident) -> Incident:
    """Authorize ``incident:update`` on the incident (404 for another workspace's, or one about a
    restricted project the actor cannot see), and return it locked and fresh."""
    authorize(actor, "incident:update", incident)
    locked = Incident.objects.for_workspace(actor.workspace).select_for_update().filter(pk=incident.pk).first()
    if locked is None:
        from accounts.authz import NotFound

        raise NotFound()
    project_id = None
    if locked.flow_id is not None:
        project_id = Flow.objects.for_workspace(actor.workspace).filter(pk=locked.flow_id).values_list(
            "project_id", flat=True).first()
    elif locked.policy_id is not None:
        project_id = _project_id(locked)
    if project_id is not None:
        project = Project.objects.for_workspace(actor.workspace).get(pk=project_id)
        authorize(actor, "project:read", project)  # restricted and not shared: NotFound
    return locked


def _refuse_resolved(incident: Incident, what: str) -> None:
    if incident.status == Incident.Status.RESOLVED:
        raise Conflict(f"The incident is already resolved; there is nothing to {what}.", code="incident_resolved",
                       details={"status": incident.status})


def _audit(actor: Principal, incident: Incident, action: str, data: dict[str, Any] | None = None) -> None:
    audit_record(workspace=actor.workspace, action=action, target=incident, actor=actor,
                 target_label=incident.title[:254], data={"kind": incident.kind, **(data or {})})


@transaction.atomic
def incident_acknowledge(actor: Principal, incident: Incident) -> Incident:
    """Someone is on it: ``acknowledged`` (a snooze in progress is cleared). Acknowledging an
    acknowledged, unsnoozed incident changes nothing."""
    with workspace_scope([actor.workspace.pk]):
        locked = _check(actor, incident)
        _refuse_resolved(locked, "acknowledge")
        if locked.status == Incident.Status.ACKNOWLEDGED and locked.snoozed_until is None:
            return locked
        now = db_now()
        locked.status, locked.snoozed_until = Incident.Status.ACKNOWLEDGED, None
        locked.acknowledged_at, locked.acknowledged_by = now, actor.label[:254]
        locked.save(update_fields=["status", "snoozed_until", "acknowledged_at", "acknowledged_by"])
        _timeline(locked, IncidentEvent.Kind.ACKNOWLEDGED, f"Acknowledged by {actor.label}.", actor=actor.label, at=now)
        _audit(actor, locked, "incident.acknowledged")
        _announce(locked, "updated")
    return locked


def _minutes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SNOOZE_MINUTES:
        raise InvalidInput(
            f"minutes must be a whole number from 1 to {MAX_SNOOZE_MINUTES} (7 days).", code="invalid_snooze",
            details={"minutes": [f"A whole number from 1 to {MAX_SNOOZE_MINUTES}."]},
        )
    return value


@transaction.atomic
def incident_snooze(actor: Principal, incident: Incident, *, minutes: Any) -> Incident:
    """Quiet the incident for ``minutes``: it counts as acknowledged until then and is open again
    afterwards (no notification is repeated either way)."""
    minutes = _minutes(minutes)
    with workspace_scope([actor.workspace.pk]):
        locked = _check(actor, incident)
        _refuse_resolved(locked, "snooze")
        now = db_now()
        until = now + timedelta(minutes=minutes)
        locked.status, locked.snoozed_until = Incident.Status.ACKNOWLEDGED, until
        if locked.acknowledged_at is None:
            locked.acknowledged_at, locked.acknowledged_by = now, actor.label[:254]
        locked.save(update_fields=["status", "snoozed_until", "acknowledged_at", "acknowledged_by"])
        _timeline(locked, IncidentEvent.Kind.SNOOZED, f"Snoozed by {actor.label} for {minutes} min.",
                  actor=actor.label, at=now, details={"minutes": minutes, "until": until.isoformat()})
        _audit(actor, locked, "incident.snoozed", {"minutes": minutes, "until": until.isoformat()})
        _announce(locked, "updated")
    return locked


@transaction.atomic
def incident_resolve(actor: Principal, incident: Incident) -> Incident:
    """Resolve by hand. The evaluator does not open the same (policy, subject) again until the
    condition has cleared once (a person said "we know"; the next page is for the next outage)."""
    with workspace_scope([actor.workspace.pk]):
        locked = _check(actor, incident)
        _refuse_resolved(locked, "resolve")
        now = db_now()
        locked.status, locked.resolved_at, locked.resolved_by = Incident.Status.RESOLVED, now, actor.label[:254]
        locked.snoozed_until = None
        locked.details = {**locked.details, HOLD_KEY: True}
        locked.save(update_fields=["status", "resolved_at", "resolved_by", "snoozed_until", "details"])
        _timeline(locked, IncidentEvent.Kind.RESOLVED, f"Resolved by {actor.label}.", actor=actor.label, at=now)
        _audit(actor, locked, "incident.resolved")
        _announce(locked, "resolved")
        _notify(locked, "resolved")
    return locked


# --- reads the evaluator needs -----------------------------------------------------------------------


def active_incidents(policy_ids: Q) -> list[Incident]:
    """Open and acknowledged incidents matching ``policy_ids`` (a Q on the incident), unscoped: the
    caller holds the RLS bypass."""
    return list(Incident.objects.unscoped().filter(policy_ids, status__in=ACTIVE)
                .only("pk", "workspace_id", "policy_id", "kind", "subject_key", "flow_id", "details", "title"))


def held_subjects(policy_ids: Q) -> dict[tuple[Any, str], Any]:
    """(policy id, subject) → id of a resolved incident a person resolved while its condition held."""
    rows = (Incident.objects.unscoped().filter(policy_ids, status=Incident.Status.RESOLVED)
            .exclude(resolved_by="").filter(details__has_key=HOLD_KEY)
            .values_list("policy_id", "subject_key", "pk", "details"))
    return {(policy_id, key): pk for policy_id, key, pk, details in rows if details.get(HOLD_KEY)}


def listed_runs(policy_ids: Q) -> dict[Any, set[Any]]:
    """Active incident id → the runs it lists, for the active incidents matching ``policy_ids``."""
    listed: dict[Any, set[Any]] = {}
    rows = (IncidentRun.objects.unscoped()
            .filter(**{"incident__status__in": ACTIVE})
            .filter(_on_incident(policy_ids)).values_list("incident_id", "flow_run_id"))
    for incident_id, run_id in rows:
        listed.setdefault(incident_id, set()).add(run_id)
    return listed


def _on_incident(q: Q) -> Q:
    """``q`` (written against Incident) rewritten against IncidentRun's ``incident``."""
    rewritten = Q()
    rewritten.connector, rewritten.negated = q.connector, q.negated
    rewritten.children = [
        _on_incident(child) if isinstance(child, Q) else (f"incident__{child[0]}", child[1])  # type: ignore[index]
        for child in q.children
    ]
    return rewritten
