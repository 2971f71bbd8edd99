"""NUL and lone UTF-16 surrogates are refused with a clear 400 that names where they were, before any
view runs and nothing is written: REST paths, query strings and JSON bodies (run parameters, task
keys, schedule parameters), allauth's JSON and Django's form bodies; GraphQL answers the same code in
its own error shape (variables, string literals, the JSON of a ``JSONString`` argument). PostgreSQL
cannot store either, and these used to surface as 500s. Every other character still goes through and
is stored exactly: emoji sent as escaped surrogate pairs, CJK, combining marks, tabs and newlines."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import Role, User, Workspace
from core.tenancy import rls_bypass
from core.text_guard import find_in_json, json_text_suspect
from orchestration.models import FlowRun, Project, Schedule, TaskRun
from tests.accounts.test_graphql import gql, login
from tests.orchestration.factories import FlowRunFactory, ProjectFactory
from tests.orchestration.graphql.factories import DagFlowVersionFactory

pytestmark = pytest.mark.django_db

NUL, SURROGATE = "\x00", "\ud800"
FINE = "Ünïcode 😀 漢字 e\u0301 tab\there\nnew line"  # json.dumps escapes the emoji as "\ud83d\ude00"


def _count(model: Any, world: Any) -> int:
    with rls_bypass():
        return model.all_objects.filter(workspace=world.workspace).count()


def _assert_invalid_text(response: Any, where: str, character: str = "U+0000") -> dict[str, Any]:
    assert response.status_code == 400, response.content[:400]
    error = response.json()["error"]
    assert error["code"] == "invalid_text", error
    assert error["message"].startswith(f"The {where} contains "), error["message"]
    assert error["details"]["character"] == character
    return error


@pytest.fixture
def version(world_a):  # type: ignore[no-untyped-def]
    """Version 1 of flow "nightly" (parameters date, limit, dry_run) in world A."""
    project = ProjectFactory(workspace=world_a.workspace, name="etl")
    return DagFlowVersionFactory(flow__project=project, flow__name="nightly", flow__workspace=world_a.workspace)


@pytest.fixture
def flow(version):  # type: ignore[no-untyped-def]
    return version.flow


# --- The checks themselves --------------------------------------------------------------------


def test_find_in_json_names_the_first_bad_string_or_key_in_document_order() -> None:
    assert find_in_json({"a": ["ok", "b\x00"], "c": "\ud800"}) == ("$.a[1]", NUL, False)
    assert find_in_json({"labels": ["fine", {"odd key": "\udfff"}]}) == ('$.labels[1]["odd key"]', "\udfff", False)
    assert find_in_json({"parameters": {"a\x00b": 1}}) == ('$.parameters["a\\u0000b"]', NUL, True)
    assert find_in_json({"emoji": "\U0001f600", "cjk": "漢字", "combining": "e\u0301", "ws": "\t\n"}) is None
    deep: Any = "\x00"
    for _ in range(5000):  # iterative: any depth a parser accepted is walked
        deep = [deep]
    assert find_in_json(deep) == ("$" + "[0]" * 5000, NUL, False)


@pytest.mark.parametrize(("body", "suspect"), [
    (b'{"name": "plain"}', False),
    ('{"name": "caf\u00e9 \U0001f600"}'.encode(), False),  # raw UTF-8: nothing to look at
    (b'{"name": "\\u00e9"}', False),
    (b'{"name": "\\u0000"}', True),
    (b'{"name": "\\uD800"}', True),
    (b'{"name": "\\ud83d\\ude00"}', True),  # a pair: looked at, and let through by the walk
    (b'{"name": "a\x00"}', True),
])
def test_the_byte_level_pre_check(body: bytes, suspect: bool) -> None:
    assert json_text_suspect(body) is suspect


# --- REST ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_rest_bodies_with_nul_or_a_lone_surrogate_are_400_and_write_nothing(world_a, flow, bad: str) -> None:
    client = world_a.client(Role.DEVELOPER, key=True)
    character = f"U+{ord(bad):04X}"
    cases = [
        ("projects/", {"name": f"etl{bad}"}, "JSON body at $.name", Project),
        ("flow-runs/", {"flow": str(flow.pk), "parameters": {"date": f"2026{bad}"}}, "JSON body at $.parameters.date",
         FlowRun),
        ("flow-runs/", {"flow": str(flow.pk), "labels": ["ok", bad]}, "JSON body at $.labels[1]", FlowRun),
        ("flow-runs/", {"flow": str(flow.pk), "parameters": {f"da{bad}te": "x"}},
         f'key of the JSON body at $.parameters["da\\u{ord(bad):04x}te"]', FlowRun),
        (f"flows/{flow.pk}/schedules/", {"kind": "cron", "cron": "0 * * * *", "parameters": {"date": bad}},
         "JSON body at $.parameters.date", Schedule),
    ]
    for path, body, where, model in cases:
        before = _count(model, world_a)
        response = client.post(world_a.url(path), json.dumps(body), content_type="application/json")
        error = _assert_invalid_text(response, where, character)
        assert error["details"]["location"] == "body"
        assert _count(model, world_a) == before, path


def test_task_keys_from_an_agent_are_refused_before_anything_is_written(world_a, version) -> None:
    agent = world_a.client(Role.AGENT)
    run = FlowRunFactory(flow_version=version)
    for bad in (NUL, SURROGATE):
        body = {"attempt": 1, "reports": [{"task_key": f"extract{bad}", "state": {"type": "RUNNING"}}]}
        response = agent.post(world_a.url(f"flow-runs/{run.pk}/task-runs/"), json.dumps(body),
                              content_type="application/json")
        _assert_invalid_text(response, "JSON body at $.reports[0].task_key", f"U+{ord(bad):04X}")
        body = {"project": "etl", "flow": {"name": "nightly", "tasks": [{"key": f"t{bad}", "name": "t"}]}}
        response = agent.post(world_a.url("flows/register/"), json.dumps(body), content_type="application/json")
        _assert_invalid_text(response, "JSON body at $.flow.tasks[0].key", f"U+{ord(bad):04X}")
    assert _count(TaskRun, world_a) == 0


def test_query_strings_and_paths_with_nul_are_400(world_a) -> None:
    client = world_a.client(Role.VIEWER, key=True)
    error = _assert_invalid_text(client.get(world_a.url("flow-runs/") + "?labels=a%00b"), "query parameter `labels`")
    assert error["details"] == {"location": "query", "parameter": "labels", "character": "U+0000"}
    _assert_invalid_text(client.get(world_a.url("flows/") + "?na%00me=x"), "name of query parameter `na\\u0000me`")
    anonymous = Client()
    error = _assert_invalid_text(anonymous.get("/api/v1/invitations/abc%00def/"), "request path")
    assert error["details"]["location"] == "path"


def test_allauth_json_is_guarded_too_whatever_its_encoding(client) -> None:  # type: ignore[no-untyped-def]
    users = User.objects.count()
    body = {"email": "new@example.com", "password": "a long passphrase 1", "workspace_name": f"Acme{SURROGATE}"}
    response = client.post("/_allauth/browser/v1/auth/signup", json.dumps(body), content_type="application/json")
    _assert_invalid_text(response, "JSON body at $.workspace_name", "U+D800")
    # json.loads (allauth's parser) reads UTF-16 too; so does the guard
    utf16 = json.dumps({"email": f"a{NUL}@example.com", "password": "x"}).encode("utf-16")
    response = client.post("/_allauth/app/v1/auth/login", utf16, content_type="application/json")
    _assert_invalid_text(response, "JSON body at $.email")
    assert User.objects.count() == users


def test_form_bodies_with_nul_are_400(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/admin/login/", "username=ad%00min&password=x",
                           content_type="application/x-www-form-urlencoded")
    error = _assert_invalid_text(response, "form field `username`")
    assert error["details"]["location"] == "form"


def test_ordinary_unicode_is_accepted_and_stored_exactly(world_a, flow) -> None:
    client = world_a.client(Role.DEVELOPER, key=True)
    text = json.dumps({"name": FINE, "description": "a literal backslash-u: \\u0000 and \\ud800"})
    assert "\\ud83d\\ude00" in text  # the emoji goes as an escaped surrogate pair
    response = client.post(world_a.url("projects/"), text, content_type="application/json")
    assert response.status_code == 201, response.content
    with rls_bypass():
        project = Project.all_objects.get(pk=response.json()["id"])
    assert project.name == FINE
    assert project.description == "a literal backslash-u: \\u0000 and \\ud800"

    body = json.dumps({"flow": str(flow.pk), "parameters": {"date": FINE}, "labels": ["😀", "漢字"]})
    response = client.post(world_a.url("flow-runs/"), body, content_type="application/json")
    assert response.status_code == 201, response.content
    with rls_bypass():
        run = FlowRun.all_objects.get(pk=response.json()["id"])
    assert run.parameters["date"] == FINE and run.labels == ["😀", "漢字"]
    assert client.get(world_a.url("flows/") + "?name=%F0%9F%98%80").status_code == 200


# --- GraphQL ------------------------------------------------------------------------------------

QUICK_RUN = """mutation($ws: String!, $flow: ID!, $parameters: JSONString, $labels: [String!]) {
  quickRun(workspace: $ws, flowId: $flow, parameters: $parameters, labels: $labels) {
    flowRun { parameters labels } errors { code } } }"""


def _graphql_invalid_text(body: dict[str, Any], where: str) -> dict[str, Any]:
    assert "data" not in body, body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "invalid_text", body
    assert error["message"].startswith(f"The {where} contains "), error["message"]
    return error


@pytest.mark.parametrize(("variables", "where"), [
    ({"labels": ["ok", "a\x00"]}, "GraphQL variable $labels[1]"),
    ({"labels": ["\ud800"]}, "GraphQL variable $labels[0]"),
    ({"parameters": json.dumps({"date": "\x00"})}, "JSON in $parameters at $.date"),
    ({"parameters": json.dumps({"date": "\ud800"})}, "JSON in $parameters at $.date"),
    ({"parameters": json.dumps({"da\x00te": "x"})}, 'key of the JSON in $parameters at $["da\\u0000te"]'),
])
def test_quick_run_variables_are_refused_and_run_nothing(world_a, flow, variables, where) -> None:
    client = login(world_a.users[Role.DEVELOPER])
    body = gql(client, QUICK_RUN, {"ws": "acme", "flow": str(flow.pk), **variables}, status=400)
    _graphql_invalid_text(body, where)
    assert _count(FlowRun, world_a) == 0


@pytest.mark.parametrize("document", [
    'mutation { createWorkspace(name: "Acme\\u0000") { errors { code } } }',
    'mutation { createWorkspace(name: """Acme\x00""") { errors { code } } }',
])
def test_string_literals_are_refused(world_a, document: str) -> None:
    client = login(world_a.users[Role.OWNER])
    workspaces = Workspace.objects.count()
    _graphql_invalid_text(gql(client, document, status=400), "string in the GraphQL document")
    assert Workspace.objects.count() == workspaces


def test_json_string_literals_are_refused_and_bad_json_is_a_400_not_a_bug(world_a, flow) -> None:
    client = login(world_a.users[Role.DEVELOPER])
    quick_run = 'mutation { quickRun(workspace: "acme", flowId: "%s", parameters: %s) { errors { code } } }'
    literal = json.dumps(json.dumps({"date": "\x00"}))  # GraphQL's escapes are JSON's
    body = gql(client, quick_run % (flow.pk, literal), status=400)
    _graphql_invalid_text(body, "JSON in a JSONString argument at $.date")
    # A JSONString literal that is not JSON at all is the document's fault (it was masked as a 500).
    body = gql(client, quick_run % (flow.pk, '"nope"'), status=400)
    assert body["errors"][0]["extensions"]["code"] == "invalid_query"
    assert "JSONString" in body["errors"][0]["message"]
    assert _count(FlowRun, world_a) == 0


@pytest.mark.parametrize(("document", "variables", "where"), [
    ("query($s: String!) { workspace(slug: $s) { name } }", {"s": "acme\ud800"}, "GraphQL variable $s"),
    ("query($t: String!) { invitation(token: $t) { email } }", {"t": "tok\x00en"}, "GraphQL variable $t"),
])
def test_anonymous_reads_are_refused_in_graphql_shape(world_a, document: str, variables: dict[str, str],
                                                      where: str) -> None:
    _graphql_invalid_text(gql(Client(), document, variables, status=400), where)


def test_mark_flow_run_message_is_refused_and_the_run_keeps_its_state(world_a, version) -> None:
    run = FlowRunFactory(flow_version=version)
    client = login(world_a.users[Role.DEVELOPER])
    document = """mutation($ws: String!, $id: ID!, $message: String) {
      markFlowRun(workspace: $ws, id: $id, stateType: "FAILED", message: $message) { errors { code } } }"""
    body = gql(client, document, {"ws": "acme", "id": str(run.pk), "message": "why\x00"}, status=400)
    _graphql_invalid_text(body, "GraphQL variable $message")
    with rls_bypass():
        assert FlowRun.all_objects.get(pk=run.pk).state_type == run.state_type


def test_graphql_stores_ordinary_unicode_exactly(world_a, flow) -> None:
    client = login(world_a.users[Role.DEVELOPER])
    body = gql(client, QUICK_RUN, {"ws": "acme", "flow": str(flow.pk), "labels": ["😀", "e\u0301"],
                                   "parameters": json.dumps({"date": FINE})})
    payload = body["data"]["quickRun"]
    assert payload["errors"] == [], body
    assert payload["flowRun"]["labels"] == ["😀", "e\u0301"]
    with rls_bypass():
        run = FlowRun.all_objects.get(workspace=world_a.workspace)
    assert run.parameters["date"] == FINE and run.labels == ["😀", "e\u0301"]
