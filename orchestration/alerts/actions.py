"""What a policy does on a breach, besides telling people: cancel the run, mark it failed, or pause
the flow's schedules. Each goes through the existing entry points — the run service's cancel, the
engine's :func:`~orchestration.engine.flow_run_set_state` (whose rules refuse a run that already
ended), the schedule service — acting as the system, and writes one ``action`` row on the
incident's timeline. A refusal (the run ended meanwhile) or an error is written there too and never
stops the evaluator: each action runs in its own savepoint.

Run actions apply to the runs an incident lists when it opens and to the runs added to it later
(each run breached the policy); pausing schedules happens once, when the incident opens. A
predictive warning takes no action.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction

from accounts.authz import Principal
from accounts.models import Role, Workspace
from core.errors import NotFound, ServiceError
from orchestration.engine import ProposedState, SetStateStatus, flow_run_set_state
from orchestration.models import TERMINAL_STATES, Flow, FlowRun, Schedule, StateType

from .models import BreachAction, Incident, IncidentEvent, PolicyKind, SlaPolicy

logger = logging.getLogger(__name__)

# A correlated incident can list many runs; one breach acts on at most this many at a time (the
# rest are acted on as the next passes add them, or by people).
MAX_RUNS_PER_ACTION = 500


def system_principal(workspace_id: Any) -> Principal:
    """Flowdeck itself, acting in a workspace: no user, no service account (its label is
    "system" in the audit log), with the role that may change any run and schedule."""
    workspace = Workspace.objects.get(pk=workspace_id)
    return Principal(workspace=workspace, role=Role.ADMIN)


def _timeline(incident: Incident, message: str, at: datetime, **details: Any) -> None:
    IncidentEvent.objects.unscoped().create(
        workspace_id=incident.workspace_id, incident_id=incident.pk, kind=IncidentEvent.Kind.ACTION,
        message=message[:4000], details=details, at=at,
    )


def apply_breach_action(policy: SlaPolicy, incident: Incident, run_ids: Iterable[Any], *, opening: bool,
                        now: datetime) -> None:
    """Carry out ``policy.action`` for ``incident`` (inside the transaction that opened it or added
    ``run_ids`` to it)."""
    action = policy.action
    if action == BreachAction.NONE:
        return
    if action == BreachAction.PAUSE_SCHEDULES:
        if opening:
            _pause_schedules(policy, incident, now)
        return
    ids = list(run_ids)[:MAX_RUNS_PER_ACTION]
    if not ids:
        return
    runs = list(FlowRun.objects.for_workspace(incident.workspace_id).filter(pk__in=ids)
                .values_list("pk", "name", "state_type"))
    open_runs = [(pk, name) for pk, name, state in runs if state not in TERMINAL_STATES]
    if not open_runs:
        if opening:
            _timeline(incident, f"Nothing to {_verb(action)}: the runs have already ended.", now, action=action)
        return
    for pk, name in open_runs:
        ok, why = _act_on_run(action, policy, incident, pk)
        verb = "Cancelled" if action == BreachAction.CANCEL_RUN else "Marked failed"
        message = (f"{verb} run {name}." if ok else f"Could not {_verb(action)} run {name}: {why}")
        _timeline(incident, message, now, action=action, flow_run_id=str(pk), ok=ok)


def _verb(action: str) -> str:
    verbs: dict[str, str] = {BreachAction.CANCEL_RUN: "cancel", BreachAction.FAIL_RUN: "mark failed"}
    return verbs.get(action, action)


def _act_on_run(action: str, policy: SlaPolicy, incident: Incident, run_id: Any) -> tuple[bool, str]:
    """Cancel or fail one run in a savepoint; (done, why not)."""
    try:
        with transaction.atomic():
            if action == BreachAction.CANCEL_RUN:
                from orchestration.services.runs import flow_run_cancel

                run = FlowRun.objects.for_workspace(incident.workspace_id).get(pk=run_id)
                flow_run_cancel(actor=system_principal(incident.workspace_id), flow_run=run)
                return True, ""
            reason = f"SLA policy '{policy.name}' breached: {incident.cause or incident.title}"
            result = flow_run_set_state(
                actor=None, flow_run_id=run_id, workspace_id=incident.workspace_id,
                state=ProposedState(type=StateType.FAILED, name="Failed", message=reason[:2000],
                                    details={"sla_policy_id": str(policy.pk), "incident_id": str(incident.pk)}),
            )
            if result.status is not SetStateStatus.ACCEPT:
                return False, result.reason or f"the run is {result.state_type}"
            return True, ""
    except (ServiceError, NotFound, FlowRun.DoesNotExist) as exc:
        return False, str(exc) or type(exc).__name__
    except Exception as exc:  # an action must never stop the evaluator; the timeline says what happened
        logger.exception("SLA action %s on run %s failed", action, run_id)
        return False, f"{type(exc).__name__}: {exc}"


def _flows_concerned(policy: SlaPolicy, incident: Incident) -> list[Any]:
    """The incident's flow; else the flows of its runs; else (an agent policy) the policy's flows."""
    if incident.flow_id is not None:
        return [incident.flow_id]
    flows = list(FlowRun.objects.for_workspace(incident.workspace_id)
                 .filter(incident_runs__incident_id=incident.pk).values_list("flow_id", flat=True).distinct())
    if flows or policy.kind != PolicyKind.AGENT:
        return flows
    from .selectors import policy_flows

    return list(policy_flows(policy).values_list("pk", flat=True))


def _pause_schedules(policy: SlaPolicy, incident: Incident, now: datetime) -> None:
    from orchestration.services.schedules import schedule_set_active

    flow_ids = _flows_concerned(policy, incident)
    schedules = list(Schedule.objects.for_workspace(incident.workspace_id)
                     .filter(flow_id__in=flow_ids, is_active=True).order_by("created_at"))
    if not schedules:
        _timeline(incident, "No active schedule to pause.", now, action=policy.action)
        return
    actor = system_principal(incident.workspace_id)
    names = dict(Flow.objects.for_workspace(incident.workspace_id).filter(pk__in=flow_ids).values_list("pk", "name"))
    paused: list[Schedule] = []
    failed: list[tuple[Schedule, str]] = []
    for schedule in schedules:
        try:
            with transaction.atomic():
                schedule_set_active(actor=actor, schedule=schedule, is_active=False)
            paused.append(schedule)
        except Exception as exc:  # one schedule that cannot be paused does not keep the others running
            logger.exception("SLA action: could not pause schedule %s", schedule.pk)
            failed.append((schedule, f"{type(exc).__name__}: {exc}"))
    flows = sorted({names.get(s.flow_id, str(s.flow_id)) for s in paused})
    if paused:
        _timeline(incident, f"Paused {len(paused)} schedule(s) of {', '.join(flows)}.", now, action=policy.action,
                  schedule_ids=[str(s.pk) for s in paused])
    for schedule, why in failed:
        _timeline(incident, f"Could not pause a schedule of {names.get(schedule.flow_id, schedule.flow_id)}: {why}",
                  now, action=policy.action, schedule_id=str(schedule.pk), ok=False)
