"""REST of SLA policies and incidents: CRUD, pause and preview (flows covered and, for duration,
each flow's p95 with its sample size); incidents with filters, cursor pages, detail (runs and
timeline) and the three people's actions; roles (Viewers read, Developers manage), another
workspace's ids (404, never listed), restricted projects hidden, and bad input answered with an
actionable 4xx that writes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from guardian.shortcuts import assign_perm

from accounts.models import AuditLogEntry, Role
from core.tenancy import rls_bypass
from orchestration.alerts.models import Incident, IncidentEvent, SlaPolicy
from tests.orchestration.api.conftest import assert_error
from tests.orchestration.factories import FlowFactory, FlowRunFactory, FlowVersionFactory, ProjectFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

START = {"name": "late", "kind": "start", "threshold_seconds": 300}


def _policy(world: Any, **fields: Any) -> SlaPolicy:
    with rls_bypass():
        return SlaPolicy.all_objects.create(workspace=world.workspace, **{**START, **fields})


def _version(flow: Any) -> Any:
    with rls_bypass():
        return flow.versions.get()


def _count(model: Any, world: Any) -> int:
    with rls_bypass():
        return model.all_objects.filter(workspace=world.workspace).count()


def _audit_actions(world: Any) -> list[str]:
    with rls_bypass():
        return list(AuditLogEntry.all_objects.filter(workspace=world.workspace).exclude(action__startswith="member")
                    .order_by("created_at", "id").values_list("action", flat=True))


@pytest.fixture
def hidden_flow(world_a):
    """A flow in a restricted project that Developers and Viewers are not granted."""
    project = ProjectFactory(workspace=world_a.workspace, name="payroll", is_restricted=True)
    return FlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace, flow__name="salaries").flow


# --- policies -----------------------------------------------------------------------------------


def test_developer_creates_reads_updates_pauses_and_deletes_a_policy(world_a, flow_a, alerts_channel):
    client = world_a.client(Role.DEVELOPER)
    channel = alerts_channel(world_a)
    created = client.post(world_a.url("sla-policies/"), {**START, "flow_id": str(flow_a.pk), "labels": ["gpu"],
                                                          "channel_ids": [str(channel.pk)]}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["name"] == "late" and body["flow_id"] == str(flow_a.pk) and body["flow_name"] == "nightly"
    assert body["project_id"] is None and body["project_name"] is None and body["channel_ids"] == [str(channel.pk)]
    assert body["active_incident_count"] == 0 and body["created_by"] == "developer@acme.example.com"
    url = world_a.url(f"sla-policies/{body['id']}/")
    assert client.get(url).json() == body
    listed = client.get(world_a.url("sla-policies/")).json()["results"]
    assert [p["id"] for p in listed] == [body["id"]]
    patched = client.patch(url, {"threshold_seconds": 900, "severity": "warning"}, format="json")
    assert patched.status_code == 200, patched.content
    assert (patched.json()["threshold_seconds"], patched.json()["severity"]) == (900, "warning")
    paused = client.post(url + "pause/", {"paused": True}, format="json")
    assert paused.status_code == 200 and paused.json()["is_paused"] is True
    assert client.post(url + "pause/", {"paused": False}, format="json").json()["is_paused"] is False
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert _audit_actions(world_a) == ["sla_policy.created", "sla_policy.updated", "sla_policy.paused",
                                       "sla_policy.resumed", "sla_policy.deleted"]


def test_api_keys_work_like_sessions(world_a):
    created = world_a.client(Role.DEVELOPER, key=True).post(world_a.url("sla-policies/"), START, format="json")
    assert created.status_code == 201, created.content
    assert world_a.client(Role.VIEWER, key=True).get(world_a.url("sla-policies/")).status_code == 200


def test_the_list_counts_active_incidents(world_a, flow_a, alerts_incident):
    policy = _policy(world_a)
    alerts_incident(policy, flow=flow_a)
    alerts_incident(policy, flow=flow_a, status="acknowledged")
    alerts_incident(policy, flow=flow_a, status="resolved")
    [item] = world_a.client(Role.VIEWER).get(world_a.url("sla-policies/")).json()["results"]
    assert item["active_incident_count"] == 2


@pytest.mark.parametrize("role", [Role.VIEWER, Role.AGENT])
def test_viewers_read_but_cannot_manage_and_agents_cannot_even_read(world_a, role):
    policy = _policy(world_a)
    client = world_a.client(role)
    url = world_a.url(f"sla-policies/{policy.pk}/")
    reads = [client.get(world_a.url("sla-policies/")), client.get(url)]
    assert all(r.status_code == (200 if role == Role.VIEWER else 403) for r in reads)
    refused = [
        client.post(world_a.url("sla-policies/"), {**START, "name": "new"}, format="json"),
        client.patch(url, {"threshold_seconds": 900}, format="json"),
        client.post(url + "pause/", {"paused": True}, format="json"),
        client.delete(url),
    ]
    for response in refused:
        assert_error(response, 403, "permission_denied")
    assert _count(SlaPolicy, world_a) == 1 and _audit_actions(world_a) == []


def test_another_workspace_s_policy_is_404_everywhere_and_never_listed(world_a, world_b):
    theirs = _policy(world_b, name="globex-secret")
    client = world_a.client(Role.OWNER)
    url = world_a.url(f"sla-policies/{theirs.pk}/")
    for response in (client.get(url), client.patch(url, {"threshold_seconds": 900}, format="json"),
                     client.delete(url), client.post(url + "pause/", {"paused": True}, format="json")):
        assert_error(response, 404, "not_found")
    assert client.get(world_a.url("sla-policies/")).json()["results"] == []
    with rls_bypass():
        assert SlaPolicy.all_objects.get(pk=theirs.pk).threshold_seconds == 300


def test_policies_of_a_restricted_project_are_hidden_from_those_it_is_not_shared_with(world_a, hidden_flow):
    policy = _policy(world_a, flow=hidden_flow)
    on_project = _policy(world_a, name="payroll", project=hidden_flow.project)
    developer = world_a.client(Role.DEVELOPER)
    assert developer.get(world_a.url("sla-policies/")).json()["results"] == []
    for hidden in (policy, on_project):
        assert_error(developer.get(world_a.url(f"sla-policies/{hidden.pk}/")), 404)
        assert_error(developer.delete(world_a.url(f"sla-policies/{hidden.pk}/")), 404)
    assert len(world_a.client(Role.ADMIN).get(world_a.url("sla-policies/")).json()["results"]) == 2
    assign_perm("orchestration.view_project", world_a.users[Role.DEVELOPER], hidden_flow.project)
    assert len(developer.get(world_a.url("sla-policies/")).json()["results"]) == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**START, "workspace": "globex"}, "workspace"),
        ({**START, "from_registration": True}, "from_registration"),
        ({**START, "threshold_seconds": "soon"}, "threshold_seconds"),
        ({**START, "threshold_seconds": 10}, "threshold_seconds"),
        ({**START, "flow_id": "nightly"}, "flow_id"),
        ({**START, "flow_id": str(uuid.uuid4())}, "flow_id"),
        ({**START, "channel_ids": ["x"]}, "channel_ids"),
        ({**START, "labels": "gpu"}, "labels"),
        ({"kind": "start", "threshold_seconds": 300}, "name"),
        ({"name": "late"}, "kind"),
        ({**START, "kind": "agent"}, "agent_labels"),
    ],
)
def test_bad_policy_input_is_a_400_naming_the_field_and_writes_nothing(world_a, payload, field):
    response = world_a.client(Role.DEVELOPER).post(world_a.url("sla-policies/"), payload, format="json")
    error = assert_error(response, 400)
    assert field in error["details"] and field in error["message"]
    assert _count(SlaPolicy, world_a) == 0 and _audit_actions(world_a) == []


def test_bad_patch_and_pause_bodies_are_400_and_change_nothing(world_a):
    policy = _policy(world_a)
    client = world_a.client(Role.DEVELOPER)
    url = world_a.url(f"sla-policies/{policy.pk}/")
    assert_error(client.patch(url, {"threshold_seconds": 5}, format="json"), 400, "invalid_policy")
    assert_error(client.patch(url, {"kind": "failure", "threshold_seconds": 60}, format="json"), 400)
    assert_error(client.patch(url, ["x"], format="json"), 400)
    assert_error(client.post(url + "pause/", {}, format="json"), 400)
    assert_error(client.post(url + "pause/", {"paused": "perhaps"}, format="json"), 400)
    assert_error(client.get(world_a.url("sla-policies/not-a-uuid/")), 404)
    with rls_bypass():
        stored = SlaPolicy.all_objects.get(pk=policy.pk)
    assert (stored.threshold_seconds, stored.kind, stored.is_paused) == (300, "start", False)
    assert _audit_actions(world_a) == []


def test_a_name_clash_is_409(world_a):
    _policy(world_a)
    response = world_a.client(Role.DEVELOPER).post(world_a.url("sla-policies/"), START, format="json")
    error = assert_error(response, 409, "name_taken")
    assert "late" in error["message"]


# --- preview ------------------------------------------------------------------------------------


def _completed(version: Any, minutes: list[int]) -> None:
    end = timezone.now() - timedelta(days=1)
    for i, duration in enumerate(minutes):
        finished = end + timedelta(minutes=i)
        FlowRunFactory(flow_version=version, state_type="COMPLETED", state_name="Completed",
                       start_time=finished - timedelta(minutes=duration), end_time=finished)


def test_preview_lists_the_flows_a_scope_covers_and_the_p95_of_duration(world_a, flow_a, hidden_flow):
    other = FlowVersionFactory(flow__project=flow_a.project, flow__workspace=world_a.workspace, flow__name="hourly")
    elsewhere = FlowFactory(project=ProjectFactory(workspace=world_a.workspace, name="ml"), name="train")
    _completed(_version(flow_a), list(range(1, 21)))  # 1..20 minutes, in that order
    FlowRunFactory(flow_version=_version(flow_a), state_type="FAILED", start_time=timezone.now(),
                   end_time=timezone.now() + timedelta(hours=9))  # failures do not count
    client = world_a.client(Role.VIEWER)
    url = world_a.url("sla-policies/preview/")

    everything = client.post(url, {"kind": "start"}, format="json")
    assert everything.status_code == 200, everything.content
    # The restricted project's flow is not covered as far as a Viewer can see.
    assert [f["name"] for f in everything.json()["flows"]] == ["hourly", "nightly", "train"]
    assert everything.json()["flow_count"] == 3 and everything.json()["p95"] == []
    project = client.post(url, {"kind": "start", "project_id": str(flow_a.project_id)}, format="json").json()
    assert [f["name"] for f in project["flows"]] == ["hourly", "nightly"] and project["flow_count"] == 2
    assert elsewhere.name not in {f["name"] for f in project["flows"]}

    duration = client.post(url, {"kind": "duration", "project_id": str(flow_a.project_id)}, format="json").json()
    by_flow = {row["flow_name"]: row for row in duration["p95"]}
    # Nearest rank: the 19th of 20 sorted durations.
    assert by_flow["nightly"] == {"flow_id": str(flow_a.pk), "flow_name": "nightly", "p95_seconds": 19 * 60.0,
                                  "sample_size": 20}
    assert by_flow["hourly"] == {"flow_id": str(other.flow_id), "flow_name": "hourly", "p95_seconds": None,
                                 "sample_size": 0}
    # Only the last history_size successes count: the last five took 16..20 minutes.
    last_five = client.post(url, {"kind": "duration", "flow_id": str(flow_a.pk), "history_size": 5},
                            format="json").json()
    assert last_five["flow_count"] == 1
    assert last_five["p95"] == [{"flow_id": str(flow_a.pk), "flow_name": "nightly", "p95_seconds": 20 * 60.0,
                                 "sample_size": 5}]


def test_preview_refuses_hidden_or_foreign_scopes_and_bad_input(world_a, world_b, hidden_flow):
    client = world_a.client(Role.DEVELOPER)
    url = world_a.url("sla-policies/preview/")
    foreign = FlowFactory(project=ProjectFactory(workspace=world_b.workspace, name="globex-project"))
    for payload, field in (({"flow_id": str(foreign.pk)}, "flow_id"), ({"flow_id": str(hidden_flow.pk)}, "flow_id"),
                           ({"project_id": str(hidden_flow.project_id)}, "project_id"),
                           ({"history_size": 2, "kind": "duration"}, "history_size"),
                           ({"flow_id": "x"}, "flow_id"), ({"labels": ["gpu"]}, "labels"), ({"kind": "x"}, "kind")):
        error = assert_error(client.post(url, payload, format="json"), 400)
        assert field in error["details"]
        assert "globex" not in str(error) and "salaries" not in str(error)


# --- incidents ----------------------------------------------------------------------------------


@pytest.fixture
def incidents(world_a, flow_a, alerts_incident):
    """Three incidents of one policy on flow_a (open with two runs, acknowledged, resolved), and one
    of another policy without a flow, opened in that order an hour apart."""
    version = _version(flow_a)
    runs = [FlowRunFactory(flow_version=version, name=f"late-{i}") for i in range(2)]
    policy = _policy(world_a, flow=flow_a)
    other = _policy(world_a, name="gpu agents", kind="agent", agent_labels=["gpu"])
    made = {
        "open": alerts_incident(policy, flow=flow_a, runs=runs, title="nightly is late"),
        "acked": alerts_incident(policy, flow=flow_a, status="acknowledged"),
        "resolved": alerts_incident(policy, flow=flow_a, status="resolved"),
        "agent": alerts_incident(other, severity="warning", title="No agent covers gpu"),
    }
    start = timezone.now() - timedelta(hours=10)
    with rls_bypass():
        for hours, incident in enumerate(made.values()):
            Incident.all_objects.filter(pk=incident.pk).update(opened_at=start + timedelta(hours=hours))
    return {**made, "runs": runs, "policy": policy, "other": other}


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def test_incident_list_is_newest_first_with_the_cli_fields(world_a, flow_a, incidents):
    response = world_a.client(Role.VIEWER).get(world_a.url("incidents/"))
    assert _ids(response) == [str(incidents[k].pk) for k in ("agent", "resolved", "acked", "open")]
    item = response.json()["results"][-1]
    assert set(item) == {"id", "policy_id", "policy_name", "kind", "severity", "title", "cause", "status", "flow_id",
                         "flow_name", "run_count", "opened_at", "acknowledged_at", "resolved_at", "snoozed_until"}
    assert (item["policy_name"], item["flow_name"], item["run_count"], item["status"]) == (
        "late", "nightly", 2, "open")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "active"}, ["agent", "acked", "open"]),
        ({"status": "open"}, ["agent", "open"]),
        ({"status": "acknowledged"}, ["acked"]),
        ({"status": "resolved"}, ["resolved"]),
        ({"flow": "FLOW"}, ["resolved", "acked", "open"]),
        ({"flow_run": "RUN"}, ["open"]),
        ({"policy": "OTHER"}, ["agent"]),
        ({"policy": str(uuid.uuid4())}, []),
    ],
)
def test_incident_filters(world_a, flow_a, incidents, query, expected):
    values = {"FLOW": str(flow_a.pk), "RUN": str(incidents["runs"][0].pk), "OTHER": str(incidents["other"].pk)}
    query = {k: values.get(v, v) for k, v in query.items()}
    response = world_a.client(Role.VIEWER).get(world_a.url("incidents/"), query)
    assert _ids(response) == [str(incidents[k].pk) for k in expected]


def test_incident_list_pages_with_a_cursor(world_a, incidents):
    client = world_a.client(Role.VIEWER)
    first = client.get(world_a.url("incidents/"), {"limit": 3}).json()
    assert len(first["results"]) == 3 and first["next"]
    second = client.get(first["next"]).json()
    assert [i["id"] for i in second["results"]] == [str(incidents["open"].pk)] and second["next"] is None


@pytest.mark.parametrize("query", [{"status": "burning"}, {"flow": "nightly"}, {"flow_run": "1"}, {"policy": "x"}])
def test_bad_incident_filters_are_400(world_a, incidents, query):
    error = assert_error(world_a.client(Role.VIEWER).get(world_a.url("incidents/"), query), 400)
    assert next(iter(query)) in error["details"]


def test_incident_detail_has_runs_and_timeline(world_a, incidents):
    response = world_a.client(Role.VIEWER).get(world_a.url(f"incidents/{incidents['open'].pk}/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["title"] == "nightly is late" and body["run_count"] == 2 and body["details"] == {}
    assert {r["name"] for r in body["runs"]} == {"late-0", "late-1"}
    assert set(body["runs"][0]) == {"id", "name", "flow_id", "flow_name", "state_type", "state_name",
                                    "scheduled_start"}
    assert [(e["kind"], e["message"]) for e in body["events"]] == [("opened", "No agent covers gpu")]


def test_developer_acknowledges_snoozes_and_resolves(world_a, incidents):
    client = world_a.client(Role.DEVELOPER)
    url = world_a.url(f"incidents/{incidents['open'].pk}/")
    acked = client.post(url + "acknowledge/", {}, format="json")
    assert acked.status_code == 200, acked.content
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "developer@acme.example.com"
    snoozed = client.post(url + "snooze/", {"minutes": 30}, format="json")
    assert snoozed.status_code == 200, snoozed.content
    assert snoozed.json()["snoozed_until"] is not None
    resolved = client.post(url + "resolve/", {}, format="json")
    assert resolved.status_code == 200, resolved.content
    body = resolved.json()
    assert body["status"] == "resolved" and body["resolved_by"] == "developer@acme.example.com"
    assert [e["kind"] for e in body["events"]] == ["opened", "acknowledged", "snoozed", "resolved"]
    assert _audit_actions(world_a) == ["incident.acknowledged", "incident.snoozed", "incident.resolved"]
    # Resolved is final for people: a clear 409.
    assert_error(client.post(url + "acknowledge/", {}, format="json"), 409)


@pytest.mark.parametrize("body", [{}, {"minutes": 0}, {"minutes": "soon"}, {"minutes": 10**6}, {"minutes": 5, "x": 1}])
def test_bad_snooze_is_400_and_changes_nothing(world_a, incidents, body):
    response = world_a.client(Role.DEVELOPER).post(world_a.url(f"incidents/{incidents['open'].pk}/snooze/"), body,
                                                   format="json")
    assert_error(response, 400)
    with rls_bypass():
        assert Incident.all_objects.get(pk=incidents["open"].pk).status == "open"
        assert IncidentEvent.all_objects.filter(incident_id=incidents["open"].pk).count() == 1


@pytest.mark.parametrize("action", ["acknowledge", "snooze", "resolve"])
def test_viewers_cannot_act_on_incidents(world_a, incidents, action):
    response = world_a.client(Role.VIEWER).post(world_a.url(f"incidents/{incidents['open'].pk}/{action}/"),
                                                {"minutes": 5} if action == "snooze" else {}, format="json")
    assert_error(response, 403, "permission_denied")
    with rls_bypass():
        assert Incident.all_objects.get(pk=incidents["open"].pk).status == "open"


def test_another_workspace_s_incidents_are_404_and_never_listed(world_a, world_b, alerts_incident):
    theirs = alerts_incident(_policy(world_b), title="globex outage")
    client = world_a.client(Role.OWNER)
    base = world_a.url(f"incidents/{theirs.pk}/")
    assert_error(client.get(base), 404)
    for action in ("acknowledge", "snooze", "resolve"):
        assert_error(client.post(base + f"{action}/", {"minutes": 5} if action == "snooze" else {}, format="json"),
                     404)
    assert _ids(client.get(world_a.url("incidents/"))) == []
    assert _ids(client.get(world_a.url("incidents/"), {"policy": str(theirs.policy_id)})) == []
    with rls_bypass():
        assert Incident.all_objects.get(pk=theirs.pk).status == "open"


def test_incidents_of_restricted_projects_are_hidden(world_a, hidden_flow, alerts_incident, flow_a):
    about_flow = alerts_incident(_policy(world_a, name="p1"), flow=hidden_flow)
    of_project_policy = alerts_incident(_policy(world_a, name="p2", project=hidden_flow.project))
    hidden_run = FlowRunFactory(flow_version=_version(hidden_flow), name="secret-run")
    shown_run = FlowRunFactory(flow_version=_version(flow_a), name="shown-run")
    workspace_wide = alerts_incident(_policy(world_a, name="p3"), runs=[hidden_run, shown_run])
    developer = world_a.client(Role.DEVELOPER)
    assert _ids(developer.get(world_a.url("incidents/"))) == [str(workspace_wide.pk)]
    for hidden in (about_flow, of_project_policy):
        assert_error(developer.get(world_a.url(f"incidents/{hidden.pk}/")), 404)
        assert_error(developer.post(world_a.url(f"incidents/{hidden.pk}/resolve/"), {}, format="json"), 404)
    detail = developer.get(world_a.url(f"incidents/{workspace_wide.pk}/")).json()
    assert [r["name"] for r in detail["runs"]] == ["shown-run"] and detail["run_count"] == 2
    assert len(_ids(world_a.client(Role.ADMIN).get(world_a.url("incidents/")))) == 3
