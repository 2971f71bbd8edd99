"""SLA policies declared next to a flow: ``flowdeck register`` sends them in the metadata's
``sla_policies`` and the server makes the flow's registered policies match (create, update by
(flow, name), delete those no longer declared), whether or not the flow's code changed. A bad
declaration fails the whole registration with a 400 naming the policy and the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from accounts.models import AuditLogEntry, Role
from core.tenancy import rls_bypass
from orchestration.alerts.models import Incident, PolicyChannel, SlaPolicy
from orchestration.models import Flow, FlowVersion
from tests.orchestration.api.conftest import METADATA, assert_error, register

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

LATE = {"name": "late", "kind": "start", "threshold_seconds": 600, "labels": ["gpu"], "action": "cancel_run"}
SLOW = {"name": "slow", "kind": "duration", "threshold_seconds": 3600, "predictive": True, "history_size": 30,
        "severity": "warning"}


def _metadata(*policies: Any) -> dict[str, Any]:
    metadata = copy.deepcopy(METADATA)
    metadata["sla_policies"] = copy.deepcopy(list(policies))
    return metadata


def _registered(world: Any) -> dict[str, SlaPolicy]:
    with rls_bypass():
        return {p.name: p for p in SlaPolicy.all_objects.filter(workspace=world.workspace)}


def _actions(world: Any) -> list[str]:
    with rls_bypass():
        return list(AuditLogEntry.all_objects.filter(workspace=world.workspace, action__startswith="sla_policy.")
                    .order_by("created_at", "id").values_list("action", flat=True))


def test_registration_creates_the_declared_policies_scoped_to_the_flow(world_a, alerts_channel):
    channel = alerts_channel(world_a, name="pager")
    response = register(world_a.client(Role.DEVELOPER), world_a, _metadata(LATE, {**SLOW, "channels": ["pager"]}))
    assert response.status_code == 201, response.content
    flow_id = response.json()["flow"]["id"]
    found = _registered(world_a)
    assert set(found) == {"nightly: late", "nightly: slow"}
    late, slow = found["nightly: late"], found["nightly: slow"]
    assert all(p.from_registration and str(p.flow_id) == flow_id and p.project_id is None for p in found.values())
    assert (late.kind, late.threshold_seconds, late.labels, late.action) == ("start", 600, ["gpu"], "cancel_run")
    assert (slow.predictive, slow.history_size, slow.severity) == (True, 30, "warning")
    with rls_bypass():
        assert list(PolicyChannel.all_objects.filter(policy=slow).values_list("channel_id", flat=True)) == [channel.pk]
    assert _actions(world_a) == ["sla_policy.created", "sla_policy.created"]


def test_registering_again_updates_changed_policies_even_when_the_code_did_not_change(world_a):
    client = world_a.client(Role.DEVELOPER)
    assert register(client, world_a, _metadata(LATE, SLOW)).status_code == 201
    before = _registered(world_a)
    again = register(client, world_a, _metadata({**LATE, "threshold_seconds": 900}, SLOW))
    assert again.status_code == 200 and again.json()["created"] is False  # same version…
    after = _registered(world_a)
    assert after["nightly: late"].threshold_seconds == 900  # …but the policy followed the code
    assert {k: p.pk for k, p in after.items()} == {k: p.pk for k, p in before.items()}
    assert _actions(world_a) == ["sla_policy.created", "sla_policy.created", "sla_policy.updated"]
    # Unchanged declarations write nothing.
    assert register(client, world_a, _metadata({**LATE, "threshold_seconds": 900}, SLOW)).status_code == 200
    assert len(_actions(world_a)) == 3


def test_a_policy_no_longer_declared_is_deleted_and_its_incidents_resolved(world_a, alerts_incident):
    client = world_a.client(Role.DEVELOPER)
    assert register(client, world_a, _metadata(LATE, SLOW)).status_code == 201
    incident = alerts_incident(_registered(world_a)["nightly: slow"])
    assert register(client, world_a, _metadata(LATE)).status_code == 200
    assert set(_registered(world_a)) == {"nightly: late"}
    with rls_bypass():
        incident = Incident.all_objects.get(pk=incident.pk)
    assert incident.status == "resolved" and incident.policy_id is None
    assert _actions(world_a)[-1] == "sla_policy.deleted"
    # An empty list removes them all.
    assert register(client, world_a, _metadata()).status_code == 200
    assert _registered(world_a) == {}


def test_leaving_the_key_out_leaves_registered_policies_alone(world_a):
    client = world_a.client(Role.DEVELOPER)
    assert register(client, world_a, _metadata(LATE)).status_code == 201
    metadata = copy.deepcopy(METADATA)
    metadata["labels"] = ["other"]  # a new version, from an SDK that does not know about policies
    assert register(client, world_a, metadata).status_code == 201
    assert set(_registered(world_a)) == {"nightly: late"}


def test_policies_made_by_hand_and_people_s_pause_and_channels_survive_registration(world_a, alerts_channel):
    client = world_a.client(Role.DEVELOPER)
    channel = alerts_channel(world_a)
    manual = client.post(world_a.url("sla-policies/"), {"name": "by hand", "kind": "failure"}, format="json")
    assert manual.status_code == 201, manual.content
    assert register(client, world_a, _metadata(LATE)).status_code == 201
    late = _registered(world_a)["nightly: late"]
    patched = client.patch(world_a.url(f"sla-policies/{late.pk}/"),
                           {"is_paused": True, "channel_ids": [str(channel.pk)]}, format="json")
    assert patched.status_code == 200, patched.content
    assert register(client, world_a, _metadata({**LATE, "threshold_seconds": 1200})).status_code == 200
    found = _registered(world_a)
    assert set(found) == {"by hand", "nightly: late"}
    assert found["nightly: late"].is_paused is True and found["nightly: late"].threshold_seconds == 1200
    with rls_bypass():
        assert PolicyChannel.all_objects.filter(policy=found["nightly: late"]).count() == 1


def test_the_code_owns_a_registered_policy_s_name_and_scope(world_a, flow_a):
    client = world_a.client(Role.DEVELOPER)
    assert register(client, world_a, _metadata(LATE)).status_code == 201
    late = _registered(world_a)["nightly: late"]
    for change in ({"name": "renamed"}, {"project_id": str(flow_a.project_id)}):
        error = assert_error(client.patch(world_a.url(f"sla-policies/{late.pk}/"), change, format="json"), 400,
                             "declared_in_code")
        assert "register again" in error["message"]
    assert _registered(world_a)["nightly: late"].flow_id == late.flow_id


@pytest.mark.parametrize(
    ("declared", "where", "words"),
    [
        ({**LATE, "threshold_seconds": 10}, "sla_policies[1].threshold_seconds", "At least 60"),
        ({**LATE, "kind": "sometimes"}, "sla_policies[1].kind", "Must be one of"),
        ({**LATE, "channels": ["nowhere"]}, "sla_policies[1].channels", "No notification channel named 'nowhere'"),
        ({**LATE, "secret": 1}, "sla_policies[1].secret", "Unknown field"),
        ({**LATE, "name": ""}, "sla_policies[1].name", "Required"),
        (SLOW, "sla_policies[1].name", "Declared twice"),
        ("late", "sla_policies[1]", "Must be an object"),
    ],
)
def test_a_bad_declaration_fails_the_registration_naming_it_and_writes_nothing(world_a, declared, where, words):
    response = register(world_a.client(Role.DEVELOPER), world_a, _metadata(SLOW, declared))
    error = assert_error(response, 400, "invalid_policy")
    assert where in error["details"], error
    assert words in error["details"][where][0] and where in error["message"]
    if isinstance(declared, dict) and declared.get("name") == "late":
        assert "'late'" in error["message"] and "'nightly'" in error["message"]
    with rls_bypass():
        assert not Flow.all_objects.filter(workspace=world_a.workspace).exists()
        assert not FlowVersion.all_objects.filter(workspace=world_a.workspace).exists()
    assert _registered(world_a) == {} and _actions(world_a) == []


def test_sla_policies_that_are_not_a_list_are_refused(world_a):
    metadata = copy.deepcopy(METADATA)
    metadata["sla_policies"] = {"late": LATE}
    error = assert_error(register(world_a.client(Role.DEVELOPER), world_a, metadata), 400)
    assert "sla_policies" in error["details"]


def test_a_declared_name_taken_by_a_hand_made_policy_is_a_clear_400(world_a):
    client = world_a.client(Role.DEVELOPER)
    taken = client.post(world_a.url("sla-policies/"), {"name": "nightly: late", "kind": "failure"}, format="json")
    assert taken.status_code == 201
    error = assert_error(register(client, world_a, _metadata(LATE)), 400, "invalid_policy")
    assert "sla_policies[0].name" in error["details"]
    with rls_bypass():
        assert not FlowVersion.all_objects.filter(workspace=world_a.workspace).exists()


def test_the_same_declared_name_on_two_flows_gives_two_policies(world_a):
    client = world_a.client(Role.DEVELOPER)
    assert register(client, world_a, _metadata(LATE)).status_code == 201
    assert register(client, world_a, _metadata(LATE), name="hourly").status_code == 201
    assert set(_registered(world_a)) == {"nightly: late", "hourly: late"}


def test_channels_of_another_workspace_are_unknown_names(world_a, world_b, alerts_channel):
    alerts_channel(world_b, name="pager")
    error = assert_error(register(world_a.client(Role.DEVELOPER), world_a, _metadata({**LATE, "channels": ["pager"]})),
                         400, "invalid_policy")
    assert "No notification channel named 'pager'" in error["details"]["sla_policies[0].channels"][0]
