"""Makers and reads for the evaluator and incident tests (test_evaluator*, test_incidents*,
test_actions*, test_correlation*, test_dedup*). Rows are written with the RLS bypass, as the
factories do; state changes after a run's first state go through the engine."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from core.tenancy import rls_bypass
from orchestration.alerts.models import (
    Incident,
    IncidentEvent,
    IncidentRun,
    NotificationChannel,
    NotificationDelivery,
    PolicyChannel,
    SlaPolicy,
)
from orchestration.engine import ForcePolicy, ProposedState, db_now, flow_run_set_state
from orchestration.models import Agent, Flow, FlowRun, FlowVersion
from tests.orchestration.factories import AgentFactory, FlowRunFactory

_names = itertools.count()


def clock() -> datetime:
    """The database clock (inside a test's transaction: the transaction's start)."""
    with rls_bypass():
        return db_now()


def policy(workspace: Any, kind: str, *, channel: bool = True, **fields: Any) -> SlaPolicy:
    """An unpaused policy (workspace-wide unless ``flow``/``project`` is given), linked to an
    e-mail channel so that its notifications can be counted."""
    fields.setdefault("name", f"{kind} policy {next(_names)}")
    with rls_bypass():
        created = SlaPolicy.all_objects.create(workspace=workspace, kind=kind, **fields)
        if channel:
            ops, _ = NotificationChannel.all_objects.get_or_create(
                workspace=workspace, name="ops", defaults={"kind": "email", "config": {"addresses": ["o@x.example"]}})
            PolicyChannel.all_objects.create(workspace=workspace, policy=created, channel=ops)
    return created


def version_of(flow: Flow) -> FlowVersion:
    with rls_bypass():
        return FlowVersion.all_objects.filter(flow=flow).order_by("version").first()


def run(flow: Flow, **fields: Any) -> FlowRun:
    version = version_of(flow)
    return FlowRunFactory(flow_version=version, flow=flow, workspace=flow.workspace, **fields)


def agent(workspace: Any, labels: list[str], *, seen: datetime | None, name: str | None = None,
          created: datetime | None = None) -> Agent:
    """An agent that last heartbeat and polled at ``seen`` (None: never)."""
    fields: dict[str, Any] = {"labels": labels, "last_heartbeat_at": seen, "last_poll_at": seen}
    if created is not None:
        fields["created_at"] = created
    return AgentFactory(workspace=workspace, name=name or f"agent-{next(_names)}", **fields)


def set_state(flow_run: FlowRun, state_type: str, name: str = "", message: str = "") -> Any:
    """Move a run to a state through the engine (a person's "mark as": any transition)."""
    with rls_bypass():
        return flow_run_set_state(actor=None, flow_run_id=flow_run.pk, workspace_id=flow_run.workspace_id,
                                  state=ProposedState(type=state_type, name=name, message=message),
                                  policy=ForcePolicy())


def reload(obj: Any) -> Any:
    with rls_bypass():
        return type(obj).all_objects.get(pk=obj.pk)


def incidents(**filters: Any) -> list[Incident]:
    with rls_bypass():
        return list(Incident.all_objects.filter(**filters).order_by("opened_at", "id"))


def only_incident(**filters: Any) -> Incident:
    (found,) = incidents(**filters)
    return found


def timeline(incident: Incident) -> list[tuple[str, str]]:
    with rls_bypass():
        return list(IncidentEvent.all_objects.filter(incident=incident).order_by("at", "id")
                    .values_list("kind", "message"))


def kinds(incident: Incident) -> list[str]:
    return [kind for kind, _ in timeline(incident)]


def run_ids(incident: Incident) -> set[Any]:
    with rls_bypass():
        return set(IncidentRun.all_objects.filter(incident=incident).values_list("flow_run_id", flat=True))


def deliveries(incident: Incident) -> list[str]:
    """The notification events queued for the incident, e.g. ["opened", "resolved"]."""
    with rls_bypass():
        return sorted(NotificationDelivery.all_objects.filter(incident=incident).values_list("event", flat=True))


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
