"""The flow page's and the projects list's actions over GraphQL: pin, unpin, archive and restore a
version; pause and resume a schedule (and its next fire times); create, rename and restrict a
project. Each goes through the same service as REST, so it is audited and announced live the same
way; a Viewer is refused in plain words, bad input is a 4xx-style code, and another workspace's
member gets the answer a missing id gets."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AuditLogEntry, Role
from core.tenancy import rls_bypass
from orchestration.models import Flow, FlowVersion, Project, Schedule
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.factories import ProjectFactory

from .factories import DagFlowVersionFactory, ScheduleFactory

ERRORS = "errors { code message field }"
FLOW_FIELDS = "flow { id pinnedVersionId activeVersion { id version } versions { id version isArchived } }"

PIN = f"""mutation($ws: String!, $flow: ID!, $version: ID!) {{
  pinFlowVersion(workspace: $ws, flowId: $flow, versionId: $version) {{ {FLOW_FIELDS} {ERRORS} }} }}"""
UNPIN = f"""mutation($ws: String!, $flow: ID!) {{
  unpinFlowVersion(workspace: $ws, flowId: $flow) {{ {FLOW_FIELDS} {ERRORS} }} }}"""
ARCHIVE = f"""mutation($ws: String!, $flow: ID!, $version: ID!, $archived: Boolean!) {{
  setFlowVersionArchived(workspace: $ws, flowId: $flow, versionId: $version, archived: $archived) {{
    flowVersion {{ id isArchived }} {FLOW_FIELDS} {ERRORS} }} }}"""
PAUSE = f"""mutation($ws: String!, $flow: ID!, $id: ID!, $paused: Boolean!) {{
  setSchedulePaused(workspace: $ws, flowId: $flow, id: $id, paused: $paused) {{
    schedule {{ id isActive nextRuns(first: 3) }} {ERRORS} }} }}"""
PROJECT_FIELDS = "project { id name description isRestricted flows { id name } }"
CREATE_PROJECT = f"""mutation($ws: String!, $name: String!, $description: String, $restricted: Boolean) {{
  createProject(workspace: $ws, name: $name, description: $description, isRestricted: $restricted) {{
    {PROJECT_FIELDS} {ERRORS} }} }}"""
UPDATE_PROJECT = f"""mutation($ws: String!, $id: ID!, $name: String, $description: String, $restricted: Boolean) {{
  updateProject(workspace: $ws, id: $id, name: $name, description: $description, isRestricted: $restricted) {{
    {PROJECT_FIELDS} {ERRORS} }} }}"""
SCHEDULES = """query($ws: String!, $flow: ID!, $first: Int) { orchestration(workspace: $ws) { flow(id: $flow) {
  schedules { id isActive nextRuns(first: $first) } } } }"""


# Their cross-workspace test is below (it needs A's versions, schedule and project); the meta-test
# in test_isolation.py checks that this names every one of them.
MUTATIONS = {"pinFlowVersion", "unpinFlowVersion", "setFlowVersionArchived", "setSchedulePaused", "createProject",
             "updateProject"}


@pytest.fixture
def versions(dag_flow):
    """Versions 1 and 2 of the flow: 2 is the active one (the newest unarchived)."""
    v2 = DagFlowVersionFactory(flow=dag_flow, workspace=dag_flow.workspace, version=2)
    with rls_bypass():
        v1 = FlowVersion.objects.for_workspace(dag_flow.workspace).get(flow=dag_flow, version=1)
    return v1, v2


@pytest.fixture
def schedule(dag_flow):
    return ScheduleFactory(flow=dag_flow, workspace=dag_flow.workspace, cron="0 * * * *", timezone="UTC")


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, Any]]:
    """The live events sent once a change commits."""
    captured: list[dict[str, Any]] = []
    monkeypatch.setattr("core.events._send", lambda groups, event: captured.append({"groups": groups, **event}))
    return captured


def errors_of(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["errors"]]


def audit_rows(world: Any, action: str) -> list[AuditLogEntry]:
    with rls_bypass():
        return list(AuditLogEntry.objects.for_workspace(world.workspace).filter(action=action))


def stored_flow(flow: Flow) -> Flow:
    with rls_bypass():
        return Flow.objects.for_workspace(flow.workspace_id).get(pk=flow.pk)


def stored_project(project_id: Any) -> Project:
    with rls_bypass():
        return Project.objects.unscoped().get(pk=project_id)


def stored_schedule(schedule: Schedule) -> Schedule:
    with rls_bypass():
        return Schedule.objects.for_workspace(schedule.workspace_id).get(pk=schedule.pk)


# --- Versions -------------------------------------------------------------------------------------


def test_pinning_an_older_version_makes_it_active_audited_and_announced(
    world_a, dag_flow, versions, sent, django_capture_on_commit_callbacks
):
    v1, _v2 = versions
    with django_capture_on_commit_callbacks(execute=True):
        payload = ok(gql(login(world_a.users[Role.DEVELOPER]), PIN,
                         {"ws": "acme", "flow": str(dag_flow.pk), "version": str(v1.pk)}))["pinFlowVersion"]
    assert payload["errors"] == []
    assert payload["flow"]["activeVersion"] == {"id": str(v1.pk), "version": 1}
    assert payload["flow"]["pinnedVersionId"] == str(v1.pk)
    assert stored_flow(dag_flow).pinned_version_id == v1.pk
    (row,) = audit_rows(world_a, "flow.version_pinned")
    assert row.data == {"previous": None, "version": 1} and row.actor_user == world_a.users[Role.DEVELOPER]
    assert [e["data"] for e in sent if e["type"] == "flow.updated"] == [
        {"id": str(dag_flow.pk), "pinned_version_id": str(v1.pk)}]


def test_unpinning_makes_the_newest_version_active_again(world_a, dag_flow, versions):
    v1, v2 = versions
    client = login(world_a.users[Role.DEVELOPER])
    ok(gql(client, PIN, {"ws": "acme", "flow": str(dag_flow.pk), "version": str(v1.pk)}))
    payload = ok(gql(client, UNPIN, {"ws": "acme", "flow": str(dag_flow.pk)}))["unpinFlowVersion"]
    assert payload["errors"] == []
    assert (payload["flow"]["activeVersion"]["id"], payload["flow"]["pinnedVersionId"]) == (str(v2.pk), None)
    (row,) = audit_rows(world_a, "flow.version_unpinned")
    assert row.data == {"previous": 1}


def test_archiving_the_active_version_moves_the_active_one_and_restoring_brings_it_back(
    world_a, dag_flow, versions, sent, django_capture_on_commit_callbacks
):
    v1, v2 = versions
    client = login(world_a.users[Role.DEVELOPER])
    variables = {"ws": "acme", "flow": str(dag_flow.pk), "version": str(v2.pk), "archived": True}
    with django_capture_on_commit_callbacks(execute=True):
        payload = ok(gql(client, ARCHIVE, variables))["setFlowVersionArchived"]
    assert payload["errors"] == []
    assert payload["flowVersion"] == {"id": str(v2.pk), "isArchived": True}
    assert payload["flow"]["activeVersion"]["id"] == str(v1.pk)
    assert [e["type"] for e in sent] == ["flow.version_archived"]
    (row,) = audit_rows(world_a, "flow.version_archived")
    assert row.data == {"flow_id": str(dag_flow.pk), "version": 2, "unpinned": False}

    payload = ok(gql(client, ARCHIVE, {**variables, "archived": False}))["setFlowVersionArchived"]
    assert payload["flowVersion"]["isArchived"] is False and payload["flow"]["activeVersion"]["id"] == str(v2.pk)
    assert len(audit_rows(world_a, "flow.version_restored")) == 1


def test_an_archived_version_cannot_be_pinned(world_a, dag_flow, versions):
    v1, _v2 = versions
    client = login(world_a.users[Role.DEVELOPER])
    ok(gql(client, ARCHIVE, {"ws": "acme", "flow": str(dag_flow.pk), "version": str(v1.pk), "archived": True}))
    payload = ok(gql(client, PIN, {"ws": "acme", "flow": str(dag_flow.pk), "version": str(v1.pk)}))["pinFlowVersion"]
    assert payload["flow"] is None and errors_of(payload) == ["version_archived"]
    assert "restore it first" in payload["errors"][0]["message"]
    assert stored_flow(dag_flow).pinned_version_id is None


def test_another_flows_version_is_not_found(world_a, dag_flow, versions):
    other = DagFlowVersionFactory(flow__project=dag_flow.project, flow__workspace=world_a.workspace, version=1)
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), PIN,
                     {"ws": "acme", "flow": str(dag_flow.pk), "version": str(other.pk)}))["pinFlowVersion"]
    assert errors_of(payload) == ["not_found"]
    assert stored_flow(dag_flow).pinned_version_id is None


# --- Schedules ------------------------------------------------------------------------------------


def _hourly_after(moment: datetime, count: int) -> list[datetime]:
    start = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return [start + timedelta(hours=i) for i in range(count)]


def test_a_schedules_next_runs_are_its_coming_fire_times(world_a, dag_flow, schedule):
    before = timezone.now()
    body = ok(gql(login(world_a.users[Role.VIEWER]), SCHEDULES, {"ws": "acme", "flow": str(dag_flow.pk), "first": 4}))
    (found,) = body["orchestration"]["flow"]["schedules"]
    times = [datetime.fromisoformat(t) for t in found["nextRuns"]]
    # The hour may turn between the two clocks: the times are one of the two hourly grids.
    assert times in (_hourly_after(before, 4), _hourly_after(timezone.now(), 4))


def test_next_runs_bounds_are_checked(world_a, dag_flow, schedule):
    body = gql(login(world_a.users[Role.VIEWER]), SCHEDULES, {"ws": "acme", "flow": str(dag_flow.pk), "first": 51})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["invalid_argument"]


def test_pausing_and_resuming_a_schedule_is_audited_announced_and_moves_the_next_runs(
    world_a, dag_flow, schedule, sent, django_capture_on_commit_callbacks
):
    client = login(world_a.users[Role.DEVELOPER])
    variables = {"ws": "acme", "flow": str(dag_flow.pk), "id": str(schedule.pk), "paused": True}
    with django_capture_on_commit_callbacks(execute=True):
        payload = ok(gql(client, PAUSE, variables))["setSchedulePaused"]
    assert payload["errors"] == []
    assert payload["schedule"] == {"id": str(schedule.pk), "isActive": False, "nextRuns": []}
    assert stored_schedule(schedule).is_active is False
    assert len(audit_rows(world_a, "schedule.paused")) == 1
    assert [(e["type"], e["data"]["is_active"]) for e in sent] == [("schedule.updated", False)]

    payload = ok(gql(client, PAUSE, {**variables, "paused": False}))["setSchedulePaused"]
    assert payload["schedule"]["isActive"] is True and len(payload["schedule"]["nextRuns"]) == 3
    assert len(audit_rows(world_a, "schedule.resumed")) == 1


def test_another_flows_schedule_is_not_found(world_a, dag_flow, schedule):
    other = DagFlowVersionFactory(flow__project=dag_flow.project, flow__workspace=world_a.workspace).flow
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), PAUSE,
                     {"ws": "acme", "flow": str(other.pk), "id": str(schedule.pk), "paused": True}))
    assert errors_of(payload["setSchedulePaused"]) == ["not_found"]
    assert stored_schedule(schedule).is_active is True


# --- Projects -------------------------------------------------------------------------------------


def test_a_developer_creates_and_renames_a_project(world_a, sent, django_capture_on_commit_callbacks):
    client = login(world_a.users[Role.DEVELOPER])
    with django_capture_on_commit_callbacks(execute=True):
        payload = ok(gql(client, CREATE_PROJECT, {"ws": "acme", "name": "  marketing ", "description": "Ads"}))
    created = payload["createProject"]
    assert created["errors"] == []
    assert {k: v for k, v in created["project"].items() if k != "id"} == {
        "name": "marketing", "description": "Ads", "isRestricted": False, "flows": []}
    assert [e["type"] for e in sent] == ["project.created"]
    project_id = created["project"]["id"]

    payload = ok(gql(client, UPDATE_PROJECT, {"ws": "acme", "id": project_id, "name": "growth",
                                              "description": "Ads and e-mail"}))["updateProject"]
    assert payload["errors"] == [] and payload["project"]["name"] == "growth"
    assert (stored_project(project_id).name, stored_project(project_id).description) == ("growth", "Ads and e-mail")
    (row,) = audit_rows(world_a, "project.updated")
    assert row.data == {"name": ["marketing", "growth"], "description": ["Ads", "Ads and e-mail"]}
    assert len(audit_rows(world_a, "project.created")) == 1


@pytest.mark.parametrize(
    ("name", "code", "field"),
    [("", "invalid", "name"), ("x" * 101, "invalid", "name"), ("etl", "name_taken", None)],
)
def test_bad_project_names_are_refused(world_a, dag_flow, name, code, field):
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), CREATE_PROJECT, {"ws": "acme", "name": name}))
    created = payload["createProject"]
    assert created["project"] is None
    assert [(e["code"], e["field"]) for e in created["errors"]] == [(code, field)]
    with rls_bypass():
        assert Project.objects.for_workspace(world_a.workspace).count() == 1


def test_renaming_to_a_taken_name_is_refused(world_a, dag_flow):
    other = ProjectFactory(workspace=world_a.workspace, name="ml")
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), UPDATE_PROJECT,
                     {"ws": "acme", "id": str(other.pk), "name": "etl"}))["updateProject"]
    assert errors_of(payload) == ["name_taken"] and stored_project(other.pk).name == "ml"


def test_only_owners_and_admins_restrict_a_project(world_a, dag_flow):
    project_id = str(dag_flow.project_id)
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), UPDATE_PROJECT,
                     {"ws": "acme", "id": project_id, "restricted": True}))["updateProject"]
    assert errors_of(payload) == ["permission_denied"] and stored_project(project_id).is_restricted is False

    payload = ok(gql(login(world_a.users[Role.OWNER]), UPDATE_PROJECT,
                     {"ws": "acme", "id": project_id, "restricted": True}))["updateProject"]
    assert payload["errors"] == [] and payload["project"]["isRestricted"] is True
    (row,) = audit_rows(world_a, "project.updated")
    assert row.data == {"is_restricted": [False, True]}
    # Not shared with the Developer: the project is now as good as missing for them.
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), UPDATE_PROJECT,
                     {"ws": "acme", "id": project_id, "name": "renamed"}))["updateProject"]
    assert errors_of(payload) == ["not_found"] and stored_project(project_id).name == "etl"


# --- Who may act ----------------------------------------------------------------------------------


def _documents(flow: Flow, v1: FlowVersion, schedule: Schedule) -> list[tuple[str, dict[str, Any], str]]:
    ids = {"flow": str(flow.pk)}
    return [
        (PIN, {**ids, "version": str(v1.pk)}, "pinFlowVersion"),
        (UNPIN, ids, "unpinFlowVersion"),
        (ARCHIVE, {**ids, "version": str(v1.pk), "archived": True}, "setFlowVersionArchived"),
        (PAUSE, {**ids, "id": str(schedule.pk), "paused": True}, "setSchedulePaused"),
        (UPDATE_PROJECT, {"id": str(flow.project_id), "name": "renamed"}, "updateProject"),
    ]


def _unchanged(flow: Flow, v1: FlowVersion, schedule: Schedule) -> None:
    with rls_bypass():
        assert FlowVersion.objects.for_workspace(flow.workspace_id).get(pk=v1.pk).is_archived is False
    assert stored_flow(flow).pinned_version_id is None
    assert stored_schedule(schedule).is_active is True
    assert stored_project(flow.project_id).name == "etl"


def test_a_viewer_is_refused_in_plain_words_and_nothing_changes(world_a, dag_flow, versions, schedule):
    client = login(world_a.users[Role.VIEWER])
    for document, variables, field in _documents(dag_flow, versions[0], schedule):
        payload = ok(gql(client, document, {"ws": "acme", **variables}))[field]
        assert errors_of(payload) == ["permission_denied"], field
        assert payload["errors"][0]["message"].startswith("You are a Viewer in this workspace; Viewers cannot")
    payload = ok(gql(client, CREATE_PROJECT, {"ws": "acme", "name": "mine"}))["createProject"]
    assert errors_of(payload) == ["permission_denied"]
    _unchanged(dag_flow, versions[0], schedule)
    assert AuditLogEntry.objects.unscoped().filter(workspace=world_a.workspace).count() == 0


def test_another_workspaces_owner_gets_the_answer_a_missing_id_gets(world_a, world_b, dag_flow, versions, schedule):
    """Through their own workspace or by naming this one, a stranger's ids are simply not found."""
    client = login(world_b.users[Role.OWNER])
    missing = str(uuid.uuid4())
    documents = _documents(dag_flow, versions[0], schedule)
    assert {field for _d, _v, field in documents} | {"createProject"} == MUTATIONS
    for document, variables, field in documents:
        answers = []
        for ws in ("acme", "globex"):
            answers.append(ok(gql(client, document, {"ws": ws, **variables}))[field])
        missing_ids = {k: (missing if k != "archived" and isinstance(v, str) else v) for k, v in variables.items()}
        answers.append(ok(gql(client, document, {"ws": "globex", **missing_ids}))[field])
        assert all(errors_of(a) == ["not_found"] for a in answers), (field, answers)
        assert answers[0] == answers[1] == answers[2], field
    payload = ok(gql(client, CREATE_PROJECT, {"ws": "acme", "name": "intruder"}))["createProject"]
    assert errors_of(payload) == ["not_found"]
    _unchanged(dag_flow, versions[0], schedule)
    with rls_bypass():
        assert not Project.objects.unscoped().filter(name="intruder").exists()


def test_anonymous_callers_are_not_authenticated(world_a, dag_flow, versions, schedule):
    for document, variables, field in _documents(dag_flow, versions[0], schedule):
        payload = ok(gql(login(), document, {"ws": "acme", **variables}))[field]
        assert errors_of(payload) == ["not_authenticated"], field
    _unchanged(dag_flow, versions[0], schedule)
