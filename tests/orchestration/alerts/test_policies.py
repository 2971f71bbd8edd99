"""SLA policy services: every validation rule answers with the field and a message a person can act
on and writes nothing; writes are audited with useful data; ids of another workspace or of a hidden
restricted project are "not found" on their field; deleting a policy resolves its open incidents."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from guardian.shortcuts import assign_perm

from accounts.authz import PermissionDenied
from accounts.models import AuditLogEntry, Role
from core.errors import Conflict, InvalidInput
from core.tenancy import rls_bypass
from orchestration.alerts.models import Incident, IncidentEvent, PolicyChannel, SlaPolicy
from orchestration.alerts.policies import (
    sla_policy_create,
    sla_policy_delete,
    sla_policy_set_paused,
    sla_policy_update,
)
from tests.orchestration.factories import FlowFactory, ProjectFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

START = {"name": "late", "kind": "start", "threshold_seconds": 300}


@pytest.fixture
def dev(world_a, alerts_principal):
    return alerts_principal(world_a, Role.DEVELOPER)


def _policies(world: Any) -> list[SlaPolicy]:
    with rls_bypass():
        return list(SlaPolicy.all_objects.filter(workspace=world.workspace).order_by("name"))


def _audit(world: Any, prefix: str = "sla_policy.") -> list[AuditLogEntry]:
    with rls_bypass():
        return list(AuditLogEntry.all_objects.filter(workspace=world.workspace, action__startswith=prefix)
                    .order_by("created_at", "id"))


def _invalid(actor: Any, fields: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as error:
        sla_policy_create(actor, **fields)
    assert error.value.code == "invalid_policy"
    return error.value


# --- create -------------------------------------------------------------------------------------


def test_create_stores_cleaned_fields_links_channels_and_audits(world_a, dev, flow_a, alerts_channel):
    channel = alerts_channel(world_a)
    policy = sla_policy_create(dev, **START, flow_id=str(flow_a.pk), labels=["gpu", " eu", "gpu"], action="cancel_run",
                               channel_ids=[str(channel.pk), str(channel.pk)], description="  Nightly must start  ")
    [stored] = _policies(world_a)
    assert stored.pk == policy.pk and stored.flow_id == flow_a.pk and stored.project_id is None
    assert (stored.labels, stored.threshold_seconds, stored.action) == (["gpu", "eu"], 300, "cancel_run")
    assert stored.description == "Nightly must start" and stored.created_by == world_a.users[Role.DEVELOPER].email
    assert stored.from_registration is False and stored.is_paused is False
    with rls_bypass():
        assert list(PolicyChannel.all_objects.filter(policy=stored).values_list("channel_id", flat=True)) == [
            channel.pk]
    [row] = _audit(world_a)
    assert (row.action, row.target_id, row.target_label) == ("sla_policy.created", str(policy.pk), "late")
    assert row.data == {
        "name": "late", "kind": "start", "description": "Nightly must start", "flow_id": str(flow_a.pk),
        "labels": ["gpu", "eu"], "threshold_seconds": 300, "action": "cancel_run", "channel_ids": [str(channel.pk)],
    }


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"name": "x", "kind": "start"}, "threshold_seconds", "Required for start policies"),
        ({**START, "threshold_seconds": 59}, "threshold_seconds", "At least 60"),
        ({**START, "threshold_seconds": 30 * 86400 + 1}, "threshold_seconds", "At most 2592000"),
        ({**START, "threshold_seconds": "300"}, "threshold_seconds", "whole number"),
        ({**START, "threshold_seconds": True}, "threshold_seconds", "whole number"),
        ({"name": "x", "kind": "duration"}, "threshold_seconds", "Required for duration"),
        ({"name": "x", "kind": "freshness", "threshold_seconds": 10}, "threshold_seconds", "At least 60"),
        ({**START, "kind": "weekly"}, "kind", "Must be one of start, duration"),
        ({"name": "x", "kind": "failure", "consecutive_failures": 0}, "consecutive_failures", "At least 1"),
        ({"name": "x", "kind": "failure", "consecutive_failures": 101}, "consecutive_failures", "At most 100"),
        ({**START, "kind": "duration", "predictive": True, "history_size": 4}, "history_size", "At least 5"),
        ({**START, "kind": "duration", "history_size": 1001}, "history_size", "At most 1000"),
        ({**START, "kind": "duration", "predictive": "yes"}, "predictive", "true or false"),
        ({**START, "kind": "agent"}, "agent_labels", "Required for agent policies"),
        ({**START, "kind": "agent", "agent_labels": [str(i) for i in range(51)]}, "agent_labels", "At most 50"),
        ({**START, "kind": "agent", "agent_labels": ["gpu"], "labels": ["eu"]}, "labels", "put the labels in"),
        ({**START, "labels": [""]}, "labels", "1 to 100 characters"),
        ({**START, "labels": ["x" * 101]}, "labels", "1 to 100 characters"),
        ({**START, "labels": "gpu"}, "labels", "list of strings"),
        ({**START, "name": "  "}, "name", "Required"),
        ({**START, "name": "x" * 201}, "name", "At most 200"),
        ({**START, "name": "a\x00b"}, "name", "NUL"),
        ({**START, "description": "x" * 2001}, "description", "At most 2000"),
        ({"name": "x", "kind": "failure", "threshold_seconds": 300}, "threshold_seconds", "Not used by failure"),
        ({**START, "consecutive_failures": 3}, "consecutive_failures", "Not used by start"),
        ({"name": "x", "kind": "failure", "action": "cancel_run"}, "action", "only start and duration"),
        ({**START, "kind": "freshness", "action": "fail_run"}, "action", "only start and duration"),
        ({**START, "action": "pause_schedules"}, "action", "needs a project or flow scope"),
        ({**START, "action": "explode"}, "action", "Must be one of none, cancel_run"),
        ({**START, "severity": "meh"}, "severity", "critical or warning"),
        ({**START, "is_paused": "no"}, "is_paused", "true or false"),
        ({**START, "flow_id": str(uuid.uuid4())}, "flow_id", "No flow with this id in this workspace"),
        ({**START, "project_id": "not-a-uuid"}, "project_id", "No project with this id"),
        ({**START, "channel_ids": [str(uuid.uuid4())]}, "channel_ids", "No channel with id"),
        ({**START, "channel_ids": "ops"}, "channel_ids", "list of channel ids"),
        ({**START, "workspace": "globex"}, "workspace", "Unknown field"),
    ],
)
def test_each_rule_names_its_field_with_a_clear_message_and_writes_nothing(world_a, dev, fields, field, words):
    error = _invalid(dev, fields)
    assert field in error.details, error.details
    assert words in error.details[field][0], error.details
    assert field in error.message
    assert _policies(world_a) == [] and _audit(world_a) == []


def test_every_problem_is_listed_at_once(dev):
    error = _invalid(dev, {"name": "", "kind": "failure", "consecutive_failures": 0, "severity": "x"})
    assert {"name", "consecutive_failures", "severity"} <= set(error.details)


def test_a_project_and_a_flow_together_are_refused(dev, flow_a):
    error = _invalid(dev, {**START, "project_id": str(flow_a.project_id), "flow_id": str(flow_a.pk)})
    assert error.details["flow_id"] == ["Give a project or a flow, not both."]


def test_agent_policies_cannot_pause_schedules(dev, flow_a):
    error = _invalid(dev, {**START, "kind": "agent", "agent_labels": ["gpu"], "flow_id": str(flow_a.pk),
                           "action": "pause_schedules"})
    assert "cannot pause schedules" in error.details["action"][0]


@pytest.mark.parametrize("kind", ["start", "duration", "failure", "freshness", "prestart"])
def test_pause_schedules_is_allowed_with_a_scope_for_every_kind_but_agent(world_a, dev, flow_a, kind):
    extra = {"threshold_seconds": 600} if kind in ("start", "duration", "freshness") else {}
    policy = sla_policy_create(dev, name=kind, kind=kind, project_id=str(flow_a.project_id),
                               action="pause_schedules", **extra)
    assert policy.action == "pause_schedules" and policy.project_id == flow_a.project_id


def test_ids_of_another_workspace_are_not_found_and_name_nothing_of_it(world_a, world_b, dev, alerts_channel):
    project_b = ProjectFactory(workspace=world_b.workspace, name="secret-project")
    flow_b = FlowFactory(project=project_b, name="secret-flow")
    channel_b = alerts_channel(world_b, name="secret-channel")
    for fields in ({"flow_id": str(flow_b.pk)}, {"project_id": str(project_b.pk)},
                   {"channel_ids": [str(channel_b.pk)]}):
        error = _invalid(dev, {**START, **fields})
        text = f"{error.message} {error.details}"
        assert "not found" in text.lower() or "no " in text.lower()
        assert not any(secret in text for secret in ("secret", "globex", "Globex"))
    assert _policies(world_a) == [] and _policies(world_b) == []


def test_a_restricted_project_is_not_found_for_a_developer_without_a_grant(world_a, dev, alerts_principal):
    hidden = ProjectFactory(workspace=world_a.workspace, name="payroll", is_restricted=True)
    flow = FlowFactory(project=hidden, name="salaries")
    for fields in ({"project_id": str(hidden.pk)}, {"flow_id": str(flow.pk)}):
        error = _invalid(dev, {**START, **fields})
        assert next(iter(error.details.values()))[0].startswith("No ")
    # …an Admin sees it, and so does a Developer it was shared with.
    assert sla_policy_create(alerts_principal(world_a, Role.ADMIN), **START, project_id=str(hidden.pk))
    assign_perm("orchestration.view_project", world_a.users[Role.DEVELOPER], hidden)
    assert sla_policy_create(dev, **{**START, "name": "shared"}, flow_id=str(flow.pk)).flow_id == flow.pk


def test_names_are_unique_per_workspace_with_a_friendly_409(world_a, world_b, dev, alerts_principal):
    sla_policy_create(dev, **START)
    with pytest.raises(Conflict) as error:
        sla_policy_create(dev, **{**START, "name": " late "})
    assert error.value.code == "name_taken" and "late" in error.value.message and "name" in error.value.details
    # Another workspace may use the name.
    assert sla_policy_create(alerts_principal(world_b, Role.DEVELOPER), **START).name == "late"
    assert len(_policies(world_a)) == 1


def test_viewer_cannot_manage_policies(world_a, dev, alerts_principal):
    viewer = alerts_principal(world_a, Role.VIEWER)
    with pytest.raises(PermissionDenied):
        sla_policy_create(viewer, **START)
    policy = sla_policy_create(dev, **START)
    for call in (lambda: sla_policy_update(viewer, policy, threshold_seconds=600),
                 lambda: sla_policy_set_paused(viewer, policy, True), lambda: sla_policy_delete(viewer, policy)):
        with pytest.raises(PermissionDenied):
            call()
    assert [r.action for r in _audit(world_a)] == ["sla_policy.created"]


# --- update, pause, delete ----------------------------------------------------------------------


def test_update_audits_each_changed_field_as_old_and_new(world_a, dev, flow_a, alerts_channel):
    channel = alerts_channel(world_a)
    policy = sla_policy_create(dev, **START)
    sla_policy_update(dev, policy, threshold_seconds=900, severity="warning", flow_id=str(flow_a.pk),
                      channel_ids=[str(channel.pk)], name="late")
    row = _audit(world_a)[-1]
    assert row.action == "sla_policy.updated"
    assert row.data == {"threshold_seconds": [300, 900], "severity": ["critical", "warning"],
                        "flow_id": [None, str(flow_a.pk)], "channel_ids": [[], [str(channel.pk)]]}
    # Nothing changed: no row.
    sla_policy_update(dev, policy, threshold_seconds=900)
    assert len(_audit(world_a)) == 2


def test_switching_kind_puts_the_settings_it_does_not_use_back_to_their_defaults(world_a, dev):
    policy = sla_policy_create(dev, name="slow", kind="duration", threshold_seconds=3600, predictive=True,
                               history_size=50)
    sla_policy_update(dev, policy, kind="failure", consecutive_failures=3)
    [stored] = _policies(world_a)
    assert (stored.kind, stored.threshold_seconds, stored.predictive, stored.history_size,
            stored.consecutive_failures) == ("failure", None, False, 20, 3)


def test_choosing_a_flow_drops_the_project_scope(world_a, dev, flow_a):
    policy = sla_policy_create(dev, **START, project_id=str(flow_a.project_id))
    sla_policy_update(dev, policy, flow_id=str(flow_a.pk))
    [stored] = _policies(world_a)
    assert (stored.project_id, stored.flow_id) == (None, flow_a.pk)
    sla_policy_update(dev, policy, flow_id=None)
    assert _policies(world_a)[0].flow_id is None


def test_a_bad_update_changes_nothing(world_a, dev):
    policy = sla_policy_create(dev, **START)
    with pytest.raises(InvalidInput) as error:
        sla_policy_update(dev, policy, threshold_seconds=10, severity="warning")
    assert "threshold_seconds" in error.value.details
    stored = _policies(world_a)[0]
    assert (stored.threshold_seconds, stored.severity) == (300, "critical")
    assert len(_audit(world_a)) == 1


def test_renaming_onto_another_policy_is_name_taken(world_a, dev):
    sla_policy_create(dev, **START)
    other = sla_policy_create(dev, **{**START, "name": "other"})
    with pytest.raises(Conflict):
        sla_policy_update(dev, other, name="late")
    assert [p.name for p in _policies(world_a)] == ["late", "other"]


def test_pause_and_resume_have_their_own_audit_actions(world_a, dev):
    policy = sla_policy_create(dev, **START)
    sla_policy_set_paused(dev, policy, True)
    sla_policy_set_paused(dev, policy, True)  # already paused: nothing to log
    assert _policies(world_a)[0].is_paused is True
    sla_policy_set_paused(dev, policy, False)
    assert [r.action for r in _audit(world_a)] == ["sla_policy.created", "sla_policy.paused", "sla_policy.resumed"]


def test_delete_resolves_open_incidents_keeps_them_and_audits(world_a, dev, flow_a, alerts_incident):
    policy = sla_policy_create(dev, **START, flow_id=str(flow_a.pk))
    open_one = alerts_incident(policy, flow=flow_a)
    acked = alerts_incident(policy, flow=flow_a, status="acknowledged")
    done = alerts_incident(policy, flow=flow_a, status="resolved")
    sla_policy_delete(dev, policy)
    assert _policies(world_a) == []
    with rls_bypass():
        incidents = {i.pk: i for i in Incident.all_objects.filter(workspace=world_a.workspace)}
        timeline = list(IncidentEvent.all_objects.filter(incident_id=open_one.pk).order_by("id"))
    assert len(incidents) == 3 and all(i.policy_id is None and i.policy_name == "late" for i in incidents.values())
    for pk in (open_one.pk, acked.pk):
        assert incidents[pk].status == "resolved" and incidents[pk].resolved_at is not None
        assert incidents[pk].resolved_by == world_a.users[Role.DEVELOPER].email
    assert incidents[done.pk].resolved_by == ""
    assert timeline[-1].kind == "resolved" and "policy 'late' was deleted" in timeline[-1].message
    row = _audit(world_a)[-1]
    assert row.action == "sla_policy.deleted" and row.target_id == str(policy.pk)
    assert row.data["incidents_resolved"] == 2 and row.data["flow_id"] == str(flow_a.pk)


def test_audit_rows_are_in_the_alerts_area_of_the_log(world_a, dev):
    sla_policy_create(dev, **START)
    response = world_a.client(Role.ADMIN).get(world_a.url("audit-log/"), {"area": "alerts"})
    assert response.status_code == 200, response.content
    assert [r["action"] for r in response.json()["results"]] == ["sla_policy.created"]


def test_deleting_a_flow_deletes_its_policies_and_resolves_their_incidents(world_a, dev, flow_a, alerts_incident):
    on_flow = sla_policy_create(dev, **START, flow_id=str(flow_a.pk))
    workspace_wide = sla_policy_create(dev, **{**START, "name": "everything"})
    incident = alerts_incident(on_flow, flow=flow_a)
    assert world_a.client(Role.DEVELOPER).delete(world_a.url(f"flows/{flow_a.pk}/")).status_code == 204
    assert [p.pk for p in _policies(world_a)] == [workspace_wide.pk]
    with rls_bypass():
        incident = Incident.all_objects.get(pk=incident.pk)
    assert incident.status == "resolved" and incident.policy_name == "late"
    assert [r.action for r in _audit(world_a)][-1] == "sla_policy.deleted"


def test_deleting_a_project_deletes_its_and_its_flows_policies_and_resolves_their_incidents(world_a, dev, flow_a,
                                                                                            alerts_incident):
    on_project = sla_policy_create(dev, **{**START, "name": "on-project"}, project_id=str(flow_a.project_id))
    on_flow = sla_policy_create(dev, **{**START, "name": "on-flow"}, flow_id=str(flow_a.pk))
    workspace_wide = sla_policy_create(dev, **{**START, "name": "everything"})
    incidents = [alerts_incident(on_project, flow=flow_a), alerts_incident(on_flow, flow=flow_a)]
    response = world_a.client(Role.DEVELOPER).delete(world_a.url(f"projects/{flow_a.project_id}/"))
    assert response.status_code == 204, response.content
    assert [p.pk for p in _policies(world_a)] == [workspace_wide.pk]
    with rls_bypass():
        statuses = {i.policy_name: i.status for i in Incident.all_objects.filter(pk__in=[i.pk for i in incidents])}
    assert statuses == {"on-project": "resolved", "on-flow": "resolved"}
    assert sorted(r.target_label for r in _audit(world_a) if r.action == "sla_policy.deleted") == [
        "on-flow", "on-project"]
