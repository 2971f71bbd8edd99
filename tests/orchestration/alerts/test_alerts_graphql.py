"""GraphQL of SLA alerts: ``orchestration { alerts { … } }`` reads (policies, preview, incidents with
runs and timeline, badges) and the policy and incident mutations, with the same rules as REST:
Viewers read, Developers manage, another workspace's or a hidden id is null / ``not_found``, and
lists cost the same number of queries for one row as for twenty."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditLogEntry, Role
from core.tenancy import rls_bypass
from orchestration.alerts.models import Incident, PolicyChannel, SlaPolicy
from tests.accounts.test_graphql import error_codes, gql, login, ok
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory, ProjectFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

POLICY_FIELDS = """id name description kind projectId projectName flowId flowName labels thresholdSeconds
  consecutiveFailures predictive historySize agentLabels action severity isPaused fromRegistration channelIds
  activeIncidentCount createdAt updatedAt"""
INCIDENT_FIELDS = """id policyId policyName kind severity title cause details status snoozedUntil openedAt
  acknowledgedAt acknowledgedBy resolvedAt resolvedBy flowId flowName runCount
  runs(first: 3) { id name stateType stateName scheduledStart flow { name } } events { kind message actor at }"""

POLICIES = f"""query($slug: String!) {{ orchestration(workspace: $slug) {{ alerts {{
  policies {{ {POLICY_FIELDS} }} }} }} }}"""
POLICY = f"""query($slug: String!, $id: ID!) {{ orchestration(workspace: $slug) {{ alerts {{
  policy(id: $id) {{ {POLICY_FIELDS} }} }} }} }}"""
PREVIEW = """query($slug: String!, $input: PolicyPreviewInput!) { orchestration(workspace: $slug) { alerts {
  policyPreview(input: $input) { flowCount flows { id name } p95 { flowId flowName p95Seconds sampleSize } } } } }"""
INCIDENTS = f"""query($slug: String!, $status: String, $flowId: ID, $flowRunId: ID, $policyId: ID, $first: Int) {{
  orchestration(workspace: $slug) {{ alerts {{
  incidents(status: $status, flowId: $flowId, flowRunId: $flowRunId, policyId: $policyId, first: $first) {{
    {INCIDENT_FIELDS} }} }} }} }}"""
INCIDENT = f"""query($slug: String!, $id: ID!) {{ orchestration(workspace: $slug) {{ alerts {{
  incident(id: $id) {{ {INCIDENT_FIELDS} }} }} }} }}"""
BADGES = """query($slug: String!) { orchestration(workspace: $slug) { alerts { badges { flowId activeCount severity }
  } } }"""

CREATE = """mutation($slug: String!, $input: SlaPolicyInput!) { createSlaPolicy(workspace: $slug, input: $input) {
  policy { id name kind flowId flowName thresholdSeconds channelIds labels } errors { code message field } } }"""
UPDATE = """mutation($slug: String!, $id: ID!, $input: SlaPolicyInput!) {
  updateSlaPolicy(workspace: $slug, id: $id, input: $input) {
  policy { id thresholdSeconds severity flowId } errors { code message field } } }"""
PAUSE = """mutation($slug: String!, $id: ID!, $paused: Boolean!) {
  setSlaPolicyPaused(workspace: $slug, id: $id, paused: $paused) { policy { id isPaused } errors { code field } } }"""
DELETE = """mutation($slug: String!, $id: ID!) { deleteSlaPolicy(workspace: $slug, id: $id) { ok errors { code } } }"""
ACK = """mutation($slug: String!, $id: ID!) { acknowledgeIncident(workspace: $slug, id: $id) {
  incident { id status acknowledgedBy events { kind } } errors { code message } } }"""
SNOOZE = """mutation($slug: String!, $id: ID!, $minutes: Int!) {
  snoozeIncident(workspace: $slug, id: $id, minutes: $minutes) {
  incident { id status snoozedUntil } errors { code message field } } }"""
RESOLVE = """mutation($slug: String!, $id: ID!) { resolveIncident(workspace: $slug, id: $id) {
  incident { id status resolvedBy runCount runs { name } } errors { code message } } }"""


def _policy(world: Any, **fields: Any) -> SlaPolicy:
    values = {"name": "late", "kind": "start", "threshold_seconds": 300, **fields}
    with rls_bypass():
        return SlaPolicy.all_objects.create(workspace=world.workspace, **values)


def _version(flow: Any) -> Any:
    with rls_bypass():
        return flow.versions.get()


def _alerts(world: Any, role: str, query: str, **variables: Any) -> dict[str, Any]:
    data = ok(gql(login(world.users[role]), query, {"slug": world.workspace.slug, **variables}))
    return data["orchestration"]["alerts"]


def _mutate(world: Any, role: str, query: str, **variables: Any) -> dict[str, Any]:
    data = ok(gql(login(world.users[role]), query, {"slug": world.workspace.slug, **variables}))
    return next(iter(data.values()))


# --- reads --------------------------------------------------------------------------------------


def test_viewer_reads_policies_with_every_field(world_a, flow_a, alerts_channel, alerts_incident):
    channel = alerts_channel(world_a)
    policy = _policy(world_a, flow=flow_a, labels=["gpu"], severity="warning", action="cancel_run")
    with rls_bypass():
        PolicyChannel.all_objects.create(workspace=world_a.workspace, policy=policy, channel=channel)
    alerts_incident(policy, flow=flow_a)
    [item] = _alerts(world_a, Role.VIEWER, POLICIES)["policies"]
    assert item["id"] == str(policy.pk) and item["flowName"] == "nightly" and item["projectName"] is None
    assert item["labels"] == ["gpu"] and item["channelIds"] == [str(channel.pk)] and item["activeIncidentCount"] == 1
    assert (item["thresholdSeconds"], item["severity"], item["action"], item["fromRegistration"]) == (
        300, "warning", "cancel_run", False)
    single = _alerts(world_a, Role.VIEWER, POLICY, id=str(policy.pk))["policy"]
    assert single == item


def test_policy_ids_of_another_workspace_or_hidden_projects_are_null(world_a, world_b):
    theirs = _policy(world_b)
    hidden = _policy(world_a, project=ProjectFactory(workspace=world_a.workspace, is_restricted=True))
    for pk in (theirs.pk, hidden.pk, "not-an-id"):
        assert _alerts(world_a, Role.DEVELOPER, POLICY, id=str(pk))["policy"] is None
    assert _alerts(world_a, Role.DEVELOPER, POLICIES)["policies"] == []
    assert [p["id"] for p in _alerts(world_a, Role.ADMIN, POLICIES)["policies"]] == [str(hidden.pk)]


def test_policy_preview_gives_flows_and_p95(world_a, flow_a):
    end = timezone.now() - timedelta(hours=1)
    for minutes in (2, 4, 6):
        FlowRunFactory(flow_version=_version(flow_a), state_type="COMPLETED", end_time=end,
                       start_time=end - timedelta(minutes=minutes))
    preview = _alerts(world_a, Role.VIEWER, PREVIEW, input={"kind": "duration", "flowId": str(flow_a.pk),
                                                            "historySize": 5})["policyPreview"]
    assert preview == {"flowCount": 1, "flows": [{"id": str(flow_a.pk), "name": "nightly"}],
                       "p95": [{"flowId": str(flow_a.pk), "flowName": "nightly", "p95Seconds": 360.0,
                                "sampleSize": 3}]}


def test_policy_preview_of_a_foreign_flow_is_an_error_on_the_field(world_a, world_b):
    foreign = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_b.workspace), flow__name="theirs").flow
    body = gql(login(world_a.users[Role.VIEWER]), PREVIEW, {"slug": "acme", "input": {"flowId": str(foreign.pk)}})
    assert error_codes(body) == ["invalid_policy"] and "theirs" not in str(body)


@pytest.fixture
def incidents(world_a, flow_a, alerts_incident):
    runs = [FlowRunFactory(flow_version=_version(flow_a), name=f"late-{i}") for i in range(3)]
    policy = _policy(world_a, flow=flow_a)
    return {
        "open": alerts_incident(policy, flow=flow_a, runs=runs),
        "warning": alerts_incident(policy, flow=flow_a, severity="warning", status="acknowledged"),
        "resolved": alerts_incident(policy, flow=flow_a, status="resolved"),
        "runs": runs,
        "policy": policy,
    }


def test_incidents_with_runs_timeline_and_filters(world_a, flow_a, incidents):
    active = _alerts(world_a, Role.VIEWER, INCIDENTS, status="active")["incidents"]
    assert {i["id"] for i in active} == {str(incidents["open"].pk), str(incidents["warning"].pk)}
    item = next(i for i in active if i["id"] == str(incidents["open"].pk))
    assert item["runCount"] == 3 and {r["name"] for r in item["runs"]} == {"late-0", "late-1", "late-2"}
    assert item["runs"][0]["flow"] == {"name": "nightly"} and item["flowName"] == "nightly"
    assert item["events"] == [{"kind": "opened", "message": "No agent covers gpu", "actor": "",
                               "at": item["openedAt"]}]
    by_run = _alerts(world_a, Role.VIEWER, INCIDENTS, flowRunId=str(incidents["runs"][1].pk))["incidents"]
    assert [i["id"] for i in by_run] == [str(incidents["open"].pk)]
    assert len(_alerts(world_a, Role.VIEWER, INCIDENTS, policyId=str(incidents["policy"].pk))["incidents"]) == 3
    assert len(_alerts(world_a, Role.VIEWER, INCIDENTS, first=1)["incidents"]) == 1
    single = _alerts(world_a, Role.VIEWER, INCIDENT, id=str(incidents["resolved"].pk))["incident"]
    assert single["status"] == "resolved"


def test_bad_incident_arguments_are_errors(world_a, incidents):
    client = login(world_a.users[Role.VIEWER])
    for variables in ({"status": "burning"}, {"first": -1}):
        body = gql(client, INCIDENTS, {"slug": "acme", **variables})
        assert error_codes(body) == ["invalid_argument"]


def test_incidents_of_another_workspace_are_null_and_never_listed(world_a, world_b, alerts_incident):
    theirs = alerts_incident(_policy(world_b))
    assert _alerts(world_a, Role.OWNER, INCIDENT, id=str(theirs.pk))["incident"] is None
    assert _alerts(world_a, Role.OWNER, INCIDENTS)["incidents"] == []


def test_badges_give_each_flow_its_active_count_and_worst_severity(world_a, flow_a, incidents, alerts_incident):
    other = FlowVersionFactory(flow__project=flow_a.project, flow__workspace=world_a.workspace).flow
    alerts_incident(incidents["policy"], flow=other, severity="warning")
    badges = {b["flowId"]: b for b in _alerts(world_a, Role.VIEWER, BADGES)["badges"]}
    assert badges == {
        str(flow_a.pk): {"flowId": str(flow_a.pk), "activeCount": 2, "severity": "critical"},
        str(other.pk): {"flowId": str(other.pk), "activeCount": 1, "severity": "warning"},
    }


def test_a_correlated_incident_badges_the_flows_of_its_runs_that_the_viewer_may_see(world_a, flow_a,
                                                                                   alerts_incident):
    # "No agent covers gpu" has no flow of its own: it lists late runs of two flows, one in a
    # restricted project a Developer is not shared into.
    hidden = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_a.workspace, is_restricted=True),
                                flow__workspace=world_a.workspace)
    runs = [FlowRunFactory(flow_version=_version(flow_a)), FlowRunFactory(flow_version=_version(flow_a)),
            FlowRunFactory(flow_version=hidden)]
    alerts_incident(_policy(world_a), runs=runs, subject="labels:gpu")
    badge = {"activeCount": 1, "severity": "critical"}
    everyone = {b["flowId"]: b for b in _alerts(world_a, Role.ADMIN, BADGES)["badges"]}
    assert everyone == {str(flow_a.pk): {"flowId": str(flow_a.pk), **badge},
                        str(hidden.flow_id): {"flowId": str(hidden.flow_id), **badge}}
    developer = _alerts(world_a, Role.DEVELOPER, BADGES)["badges"]
    assert developer == [{"flowId": str(flow_a.pk), **badge}]


# --- mutations ----------------------------------------------------------------------------------


def test_developer_creates_updates_pauses_and_deletes_a_policy(world_a, flow_a, alerts_channel):
    channel = alerts_channel(world_a)
    created = _mutate(world_a, Role.DEVELOPER, CREATE, input={
        "name": "late", "kind": "start", "thresholdSeconds": 300, "flowId": str(flow_a.pk),
        "channelIds": [str(channel.pk)], "labels": ["gpu"]})
    assert created["errors"] == []
    policy = created["policy"]
    assert (policy["flowName"], policy["channelIds"], policy["labels"]) == ("nightly", [str(channel.pk)], ["gpu"])
    updated = _mutate(world_a, Role.DEVELOPER, UPDATE, id=policy["id"],
                      input={"thresholdSeconds": 600, "severity": "warning"})
    assert updated == {"policy": {"id": policy["id"], "thresholdSeconds": 600, "severity": "warning",
                                  "flowId": str(flow_a.pk)}, "errors": []}
    cleared = _mutate(world_a, Role.DEVELOPER, UPDATE, id=policy["id"], input={"flowId": None})
    assert cleared["policy"]["flowId"] is None
    assert _mutate(world_a, Role.DEVELOPER, PAUSE, id=policy["id"], paused=True)["policy"]["isPaused"] is True
    assert _mutate(world_a, Role.DEVELOPER, DELETE, id=policy["id"]) == {"ok": True, "errors": []}
    with rls_bypass():
        assert not SlaPolicy.all_objects.filter(workspace=world_a.workspace).exists()
        actions = list(AuditLogEntry.all_objects.filter(workspace=world_a.workspace, action__startswith="sla_policy")
                       .order_by("created_at", "id").values_list("action", flat=True))
    assert actions == ["sla_policy.created", "sla_policy.updated", "sla_policy.updated", "sla_policy.paused",
                       "sla_policy.deleted"]


def test_invalid_input_comes_back_in_the_payload_naming_the_field(world_a):
    result = _mutate(world_a, Role.DEVELOPER, CREATE, input={"name": "late", "kind": "start", "thresholdSeconds": 5})
    assert result["policy"] is None
    [error] = result["errors"]
    assert (error["code"], error["field"]) == ("invalid_policy", "thresholdSeconds")
    assert "At least 60" in error["message"]
    _policy(world_a)
    clash = _mutate(world_a, Role.DEVELOPER, CREATE, input={"name": "late", "kind": "failure"})
    assert [(e["code"], e["field"]) for e in clash["errors"]] == [("name_taken", "name")]
    with rls_bypass():
        assert SlaPolicy.all_objects.filter(workspace=world_a.workspace).count() == 1


def test_viewers_cannot_manage_and_foreign_ids_are_not_found(world_a, world_b):
    mine, theirs = _policy(world_a), _policy(world_b)
    denied = _mutate(world_a, Role.VIEWER, CREATE, input={"name": "x", "kind": "failure"})
    assert [e["code"] for e in denied["errors"]] == ["permission_denied"]
    for query, extra in ((UPDATE, {"input": {"thresholdSeconds": 900}}), (PAUSE, {"paused": True}), (DELETE, {})):
        assert [e["code"] for e in _mutate(world_a, Role.VIEWER, query, id=str(mine.pk), **extra)["errors"]] == [
            "permission_denied"]
        assert [e["code"] for e in _mutate(world_a, Role.OWNER, query, id=str(theirs.pk), **extra)["errors"]] == [
            "not_found"]
    # A flow or project of theirs (or one hidden from the caller) is not_found, like every id a mutation names.
    foreign_flow = FlowVersionFactory(flow__project=ProjectFactory(workspace=world_b.workspace)).flow
    hidden = ProjectFactory(workspace=world_a.workspace, is_restricted=True)
    for scope in ({"flowId": str(foreign_flow.pk)}, {"projectId": str(foreign_flow.project_id)},
                  {"projectId": str(hidden.pk)}):
        created = _mutate(world_a, Role.DEVELOPER, CREATE, input={"name": "x", "kind": "failure", **scope})
        assert [e["code"] for e in created["errors"]] == ["not_found"]
        updated = _mutate(world_a, Role.DEVELOPER, UPDATE, id=str(mine.pk), input=scope)
        assert [e["code"] for e in updated["errors"]] == ["not_found"]
    with rls_bypass():
        assert SlaPolicy.all_objects.get(pk=mine.pk).threshold_seconds == 300
        assert SlaPolicy.all_objects.get(pk=mine.pk).project_id is None
        assert SlaPolicy.all_objects.get(pk=theirs.pk).is_paused is False
        assert SlaPolicy.all_objects.filter(workspace=world_a.workspace).count() == 1


def test_developer_acknowledges_snoozes_and_resolves_incidents(world_a, incidents):
    pk = str(incidents["open"].pk)
    acked = _mutate(world_a, Role.DEVELOPER, ACK, id=pk)
    assert acked["errors"] == [] and acked["incident"]["status"] == "acknowledged"
    assert acked["incident"]["acknowledgedBy"] == "developer@acme.example.com"
    assert [e["kind"] for e in acked["incident"]["events"]] == ["opened", "acknowledged"]
    bad = _mutate(world_a, Role.DEVELOPER, SNOOZE, id=pk, minutes=0)
    assert [e["code"] for e in bad["errors"]] == ["invalid_snooze"] and bad["incident"] is None
    snoozed = _mutate(world_a, Role.DEVELOPER, SNOOZE, id=pk, minutes=15)
    assert snoozed["errors"] == [] and snoozed["incident"]["snoozedUntil"]
    resolved = _mutate(world_a, Role.DEVELOPER, RESOLVE, id=pk)
    assert resolved["errors"] == [] and resolved["incident"]["status"] == "resolved"
    assert resolved["incident"]["runCount"] == 3 and len(resolved["incident"]["runs"]) == 3


def test_viewers_cannot_act_on_incidents_and_foreign_ones_are_not_found(world_a, world_b, incidents,
                                                                         alerts_incident):
    theirs = alerts_incident(_policy(world_b))
    for query, extra in ((ACK, {}), (SNOOZE, {"minutes": 5}), (RESOLVE, {})):
        viewer = _mutate(world_a, Role.VIEWER, query, id=str(incidents["open"].pk), **extra)
        assert [e["code"] for e in viewer["errors"]] == ["permission_denied"]
        foreign = _mutate(world_a, Role.OWNER, query, id=str(theirs.pk), **extra)
        assert [e["code"] for e in foreign["errors"]] == ["not_found"]
    with rls_bypass():
        assert Incident.all_objects.get(pk=incidents["open"].pk).status == "open"
        assert Incident.all_objects.get(pk=theirs.pk).status == "open"


# --- no N+1 ------------------------------------------------------------------------------------


def _queries(world: Any, query: str) -> int:
    client = login(world.users[Role.DEVELOPER])
    variables = {"slug": world.workspace.slug}
    ok(gql(client, query, variables))  # warm the process-wide caches
    with CaptureQueriesContext(connection) as captured:
        ok(gql(client, query, variables))
    return len(captured.captured_queries)


def test_policies_cost_the_same_for_1_and_20(world_a, flow_a, alerts_channel, alerts_incident):
    channels = [alerts_channel(world_a, name=f"c{i}") for i in range(2)]

    def add(n: int, start: int) -> None:
        for i in range(start, start + n):
            policy = _policy(world_a, name=f"p{i}", flow=flow_a if i % 2 else None,
                             project=None if i % 2 else flow_a.project)
            with rls_bypass():
                for channel in channels:
                    PolicyChannel.all_objects.create(workspace=world_a.workspace, policy=policy, channel=channel)
            alerts_incident(policy, flow=flow_a)

    add(1, 0)
    one = _queries(world_a, POLICIES)
    add(19, 1)
    twenty = _queries(world_a, POLICIES)
    assert twenty == one
    policies = _alerts(world_a, Role.DEVELOPER, POLICIES)["policies"]
    assert len(policies) == 20 and all(len(p["channelIds"]) == 2 and p["activeIncidentCount"] == 1 for p in policies)


def test_incidents_with_runs_and_timelines_cost_the_same_for_1_and_20(world_a, flow_a, alerts_incident):
    policy = _policy(world_a, flow=flow_a)

    def add(n: int) -> None:
        for _ in range(n):
            runs = [FlowRunFactory(flow_version=_version(flow_a)) for _ in range(2)]
            alerts_incident(policy, flow=flow_a, runs=runs)

    add(1)
    one = _queries(world_a, INCIDENTS)
    add(19)
    twenty = _queries(world_a, INCIDENTS)
    assert twenty == one
    found = _alerts(world_a, Role.DEVELOPER, INCIDENTS)["incidents"]
    assert len(found) == 20 and all(len(i["runs"]) == 2 and len(i["events"]) == 1 for i in found)
