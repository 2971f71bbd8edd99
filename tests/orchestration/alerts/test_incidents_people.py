"""What people do with incidents: acknowledge, snooze (open again when it ends, no second page),
resolve by hand (not re-opened while the condition holds, only after it cleared once), with
timeline rows, audit rows, live events, role checks and workspace isolation."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.authz import NotFound, PermissionDenied, Principal
from accounts.models import AuditLogEntry, Role
from core.errors import Conflict, InvalidInput
from core.tenancy import rls_bypass
from orchestration.alerts.evaluator import evaluate_sla_policies
from orchestration.alerts.incidents import incident_acknowledge, incident_resolve, incident_snooze
from orchestration.alerts.models import PolicyKind
from orchestration.models import StateType
from tests.orchestration.factories import FlowVersionFactory, ProjectFactory

from .evaluator_support import (
    clock,
    deliveries,
    incidents,
    kinds,
    minutes,
    only_incident,
    policy,
    reload,
    run,
    set_state,
)

pytestmark = pytest.mark.postgres


def _person(world, role=Role.DEVELOPER) -> Principal:
    return Principal(workspace=world.workspace, role=role, user=world.users[role])


def _flow(world, **project):
    return FlowVersionFactory(flow__project=ProjectFactory(workspace=world.workspace, **project),
                              flow__workspace=world.workspace).flow


def _failing(world, now, **project):
    """A flow with a failure policy (N = 1) and one failed run: an open incident."""
    flow = _flow(world, **project)
    sla = policy(world.workspace, PolicyKind.FAILURE, flow=flow, consecutive_failures=1)
    run(flow, state_type=StateType.FAILED, created_at=now - minutes(10), end_time=now - minutes(10))
    evaluate_sla_policies(now=now)
    return flow, sla, only_incident(policy=sla)


def _audit(action: str) -> list[str]:
    with rls_bypass():
        return list(AuditLogEntry.objects.unscoped().filter(action=action).values_list("actor_label", flat=True))


@pytest.fixture
def sent(monkeypatch, django_capture_on_commit_callbacks) -> list[dict[str, Any]]:
    captured: list[dict[str, Any]] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: captured.append({"groups": groups, **event}))
    return captured


def test_acknowledge_writes_timeline_audit_and_an_event(world_a, sent, django_capture_on_commit_callbacks):
    now = clock()
    _flow_, _sla, incident = _failing(world_a, now)
    developer = _person(world_a)
    with django_capture_on_commit_callbacks(execute=True):
        incident_acknowledge(developer, incident)
    incident = reload(incident)
    assert incident.status == "acknowledged" and incident.acknowledged_by == developer.label
    assert kinds(incident) == ["opened", "acknowledged"]
    assert _audit("incident.acknowledged") == [developer.label]
    (event,) = [e for e in sent if e["type"] == "incident.updated"]
    assert event["data"]["status"] == "acknowledged" and event["groups"] == [f"ws.{world_a.workspace.pk}"]
    # Acknowledging again changes nothing.
    incident_acknowledge(developer, incident)
    assert kinds(incident) == ["opened", "acknowledged"]


def test_snooze_hides_until_the_time_then_open_again_without_a_second_notification(world_a):
    now = clock()
    _flow_, _sla, incident = _failing(world_a, now)
    incident_snooze(_person(world_a), incident, minutes=30)
    incident = reload(incident)
    assert incident.status == "acknowledged"
    assert now + minutes(30) <= incident.snoozed_until <= clock() + minutes(30)

    evaluate_sla_policies(now=now + minutes(10))
    assert reload(incident).status == "acknowledged"
    evaluate_sla_policies(now=now + minutes(31))
    incident = reload(incident)
    assert (incident.status, incident.snoozed_until) == ("open", None)
    assert kinds(incident) == ["opened", "snoozed", "unsnoozed"]
    assert deliveries(incident) == ["opened"]
    evaluate_sla_policies(now=now + minutes(32))
    assert kinds(incident) == ["opened", "snoozed", "unsnoozed"]


@pytest.mark.parametrize("minutes_value", [0, -5, 10081, "30", 1.5, True, None])
def test_snooze_refuses_bad_minutes_and_writes_nothing(world_a, minutes_value):
    now = clock()
    _flow_, _sla, incident = _failing(world_a, now)
    with pytest.raises(InvalidInput) as refused:
        incident_snooze(_person(world_a), incident, minutes=minutes_value)
    assert refused.value.details == {"minutes": ["A whole number from 1 to 10080."]}
    assert reload(incident).status == "open" and kinds(incident) == ["opened"]


def test_manual_resolve_does_not_reopen_while_the_condition_holds_only_after_it_cleared(world_a):
    now = clock()
    flow, sla, incident = _failing(world_a, now)
    developer = _person(world_a)
    incident_resolve(developer, incident)
    incident = reload(incident)
    assert (incident.status, incident.resolved_by) == ("resolved", developer.label)
    assert deliveries(incident) == ["opened", "resolved"]
    assert _audit("incident.resolved") == [developer.label]

    # Still failing, and failing more: nothing new opens.
    run(flow, state_type=StateType.FAILED, created_at=now - minutes(5), end_time=now - minutes(5))
    assert evaluate_sla_policies(now=now + minutes(1)) == 0
    assert len(incidents(policy=sla)) == 1

    # The streak ends (a success): the hold is released; the next failure opens a new incident.
    run(flow, state_type=StateType.COMPLETED, created_at=now - minutes(4), end_time=now - minutes(4))
    assert evaluate_sla_policies(now=now + minutes(2)) == 0
    assert "hold_until_clear" not in reload(incident).details
    run(flow, state_type=StateType.FAILED, created_at=now - minutes(3), end_time=now - minutes(3))
    assert evaluate_sla_policies(now=now + minutes(3)) == 1
    assert [i.status for i in incidents(policy=sla)] == ["resolved", "open"]


def test_actions_on_a_resolved_incident_are_refused(world_a):
    now = clock()
    _flow_, _sla, incident = _failing(world_a, now)
    incident_resolve(_person(world_a), incident)
    for action in (incident_acknowledge, incident_resolve):
        with pytest.raises(Conflict):
            action(_person(world_a), incident)
    with pytest.raises(Conflict):
        incident_snooze(_person(world_a), incident, minutes=5)


def test_viewers_may_not_and_other_workspaces_cannot_see(world_a, world_b):
    now = clock()
    _flow_, _sla, incident = _failing(world_a, now)
    with pytest.raises(PermissionDenied):
        incident_acknowledge(_person(world_a, Role.VIEWER), incident)
    for role in (Role.OWNER, Role.DEVELOPER):
        with pytest.raises(NotFound):
            incident_resolve(_person(world_b, role), incident)
    assert reload(incident).status == "open" and kinds(incident) == ["opened"]


def test_an_incident_of_a_restricted_project_is_invisible_to_a_developer_it_is_not_shared_with(world_a):
    now = clock()
    _flow_, _sla, incident = _failing(world_a, now, is_restricted=True, name="secret")
    with pytest.raises(NotFound):
        incident_acknowledge(_person(world_a, Role.DEVELOPER), incident)
    incident_acknowledge(_person(world_a, Role.ADMIN), incident)
    assert reload(incident).status == "acknowledged"


def test_opened_and_resolved_events_have_the_agreed_shape(world_a, sent, django_capture_on_commit_callbacks):
    now = clock()
    flow = _flow(world_a)
    # No channel: only the events are sent on commit (no notification thread outliving the test).
    sla = policy(world_a.workspace, PolicyKind.DURATION, flow=flow, threshold_seconds=60, channel=False)
    slow = run(flow, state_type=StateType.RUNNING, start_time=now - minutes(5))
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_sla_policies(now=now)
    incident = only_incident(policy=sla)
    (opened,) = [e for e in sent if e["type"] == "incident.opened"]
    assert opened["groups"] == [f"ws.{world_a.workspace.pk}"]
    assert opened["data"] == {
        "id": str(incident.pk), "policy_id": str(sla.pk), "kind": "duration", "severity": "critical",
        "title": incident.title, "cause": incident.cause, "status": "open", "flow_id": str(flow.pk),
        "project_id": None, "run_count": 1,
    }
    set_state(slow, StateType.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_sla_policies(now=now)
    (resolved,) = [e for e in sent if e["type"] == "incident.resolved"]
    assert resolved["data"]["status"] == "resolved" and resolved["data"]["id"] == str(incident.pk)


def test_the_browser_socket_filters_incident_events_by_flow_or_project():
    from orchestration.live.browser import _subject

    def event(**data):
        return {"type": "incident.opened", "data": {"flow_id": None, "project_id": None, **data}}

    assert _subject(event(flow_id="f1")) == ("flow", "f1")
    assert _subject(event(project_id="p1")) == ("project", "p1")
    assert _subject(event()) is None
    assert _subject({"type": "incident.resolved", "data": {"flow_id": "f2"}}) == ("flow", "f2")
