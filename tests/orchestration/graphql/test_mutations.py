"""The UI's actions on runs over GraphQL: quick run, cancel, restart, mark as, delete — through the
runs services, with errors in the payload (bad input, refused transitions, a Viewer's
permission_denied, anonymous not_authenticated) and nothing changed when they fail."""

from __future__ import annotations

import json

import pytest

from accounts.authz import principal_for_user
from accounts.models import Role
from core.tenancy import rls_bypass, workspace_scope
from orchestration.models import FlowRun, FlowRunState
from orchestration.services import runs as run_services
from tests.accounts.test_graphql import gql, login, ok
from tests.orchestration.factories import ProjectFactory

from .factories import DagFlowVersionFactory

RUN_FIELDS = "flowRun { id name stateType stateName parameters labels attempt stateHistory { type name } }"
ERRORS = "errors { code message field }"

QUICK_RUN = f"""mutation($ws: String!, $flow: ID!, $parameters: JSONString, $labels: [String!]) {{
  quickRun(workspace: $ws, flowId: $flow, parameters: $parameters, labels: $labels) {{ {RUN_FIELDS} {ERRORS} }} }}"""


def action(name: str, extra_args: str = "", extra_decl: str = "", payload: str = RUN_FIELDS) -> str:
    return f"""mutation($ws: String!, $id: ID!{extra_decl}) {{
      {name}(workspace: $ws, id: $id{extra_args}) {{ {payload} {ERRORS} }} }}"""


CANCEL = action("cancelFlowRun")
RESTART = action("restartFlowRun")
MARK = action("markFlowRun", ", stateType: $state, message: $message", ", $state: String!, $message: String")
DELETE = action("deleteFlowRun", payload="ok")


def run_count(world) -> int:  # type: ignore[no-untyped-def]
    with rls_bypass():
        return FlowRun.objects.for_workspace(world.workspace).count()


def new_run(world, flow, role: str = Role.DEVELOPER) -> FlowRun:  # type: ignore[no-untyped-def]
    """A run made the way the app makes them (the service), so its history starts right."""
    actor = principal_for_user(world.users[role], world.workspace)
    with workspace_scope([world.workspace.pk]):
        run, _ = run_services.flow_run_create(actor=actor, flow=flow, parameters={"date": "2026-01-01"},
                                              created_by_kind="user")
    return run


def reload(run: FlowRun) -> FlowRun:
    with rls_bypass():
        return FlowRun.objects.for_workspace(run.workspace_id).get(pk=run.pk)


def test_quick_run_creates_a_scheduled_run_with_defaults_filled_in(world_a, dag_flow):
    client = login(world_a.users[Role.DEVELOPER])
    body = gql(client, QUICK_RUN, {"ws": "acme", "flow": str(dag_flow.pk),
                                   "parameters": json.dumps({"date": "2026-02-03", "limit": 5}), "labels": ["etl"]})
    payload = ok(body)["quickRun"]
    assert payload["errors"] == []
    created = payload["flowRun"]
    assert (created["stateType"], created["stateName"], created["labels"], created["attempt"]) == (
        "SCHEDULED", "Scheduled", ["etl"], 1)
    assert created["parameters"] == {"date": "2026-02-03", "limit": 5, "dry_run": False}
    assert created["stateHistory"] == [{"type": "SCHEDULED", "name": "Scheduled"}]
    with rls_bypass():
        stored = FlowRun.objects.for_workspace(world_a.workspace).get(pk=created["id"])
    assert stored.created_by_kind == "user" and stored.created_by_user == world_a.users[Role.DEVELOPER]


@pytest.mark.parametrize(
    ("parameters", "code"),
    [
        ({}, "invalid_run"),  # "date" is required
        ({"date": "x", "limit": "many"}, "invalid_run"),  # wrong type
        ({"date": "x", "colour": "red"}, "invalid_run"),  # unknown name
        (["date"], "invalid_parameters"),  # not an object
    ],
)
def test_quick_run_refuses_bad_parameters_and_creates_nothing(world_a, dag_flow, parameters, code):
    body = gql(login(world_a.users[Role.DEVELOPER]), QUICK_RUN,
               {"ws": "acme", "flow": str(dag_flow.pk), "parameters": json.dumps(parameters)})
    payload = ok(body)["quickRun"]
    assert payload["flowRun"] is None and [e["code"] for e in payload["errors"]] == [code]
    assert run_count(world_a) == 0


def test_quick_run_refuses_bad_labels(world_a, dag_flow):
    body = gql(login(world_a.users[Role.DEVELOPER]), QUICK_RUN,
               {"ws": "acme", "flow": str(dag_flow.pk), "parameters": '{"date": "x"}', "labels": ["x" * 101]})
    assert [e["code"] for e in ok(body)["quickRun"]["errors"]] == ["invalid_labels"]
    assert run_count(world_a) == 0


def test_malformed_json_parameters_are_a_bad_request(world_a, dag_flow):
    body = gql(login(world_a.users[Role.DEVELOPER]), QUICK_RUN,
               {"ws": "acme", "flow": str(dag_flow.pk), "parameters": "{not json"}, status=400)
    assert body["errors"]
    assert run_count(world_a) == 0


def test_cancel_a_run_no_agent_holds_is_cancelled_at_once(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), CANCEL, {"ws": "acme", "id": str(run.pk)}))["cancelFlowRun"]
    assert payload["errors"] == []
    assert (payload["flowRun"]["stateType"], payload["flowRun"]["stateName"]) == ("CANCELLED", "Cancelled")
    assert [s["type"] for s in payload["flowRun"]["stateHistory"]] == ["SCHEDULED", "CANCELLED"]
    assert reload(run).state_type == "CANCELLED"


def test_cancelling_a_finished_run_is_refused(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    client = login(world_a.users[Role.DEVELOPER])
    ok(gql(client, CANCEL, {"ws": "acme", "id": str(run.pk)}))
    payload = ok(gql(client, CANCEL, {"ws": "acme", "id": str(run.pk)}))["cancelFlowRun"]
    assert payload["flowRun"] is None and [e["code"] for e in payload["errors"]] == ["run_finished"]


def test_restart_a_cancelled_run(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    client = login(world_a.users[Role.DEVELOPER])
    ok(gql(client, CANCEL, {"ws": "acme", "id": str(run.pk)}))
    payload = ok(gql(client, RESTART, {"ws": "acme", "id": str(run.pk)}))["restartFlowRun"]
    assert payload["errors"] == []
    assert (payload["flowRun"]["stateType"], payload["flowRun"]["stateName"]) == ("SCHEDULED", "AwaitingRetry")


def test_restarting_a_scheduled_run_is_refused(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    developer = login(world_a.users[Role.DEVELOPER])
    payload = ok(gql(developer, RESTART, {"ws": "acme", "id": str(run.pk)}))["restartFlowRun"]
    assert [e["code"] for e in payload["errors"]] == ["not_restartable"]
    assert reload(run).state_type == "SCHEDULED"


def test_mark_a_run_failed_with_a_message(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    variables = {"ws": "acme", "id": str(run.pk), "state": "FAILED", "message": "stuck since Monday"}
    payload = ok(gql(login(world_a.users[Role.ADMIN]), MARK, variables))["markFlowRun"]
    assert payload["errors"] == [] and payload["flowRun"]["stateType"] == "FAILED"
    with rls_bypass():
        last = FlowRunState.objects.for_workspace(world_a.workspace).filter(flow_run=run).order_by("-id").first()
    assert last is not None and (last.type, last.message) == ("FAILED", "stuck since Monday")


def test_mark_with_an_unknown_state_is_refused(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    variables = {"ws": "acme", "id": str(run.pk), "state": "DONE"}
    payload = ok(gql(login(world_a.users[Role.ADMIN]), MARK, variables))["markFlowRun"]
    assert payload["errors"] == [{"code": "invalid_state", "message": payload["errors"][0]["message"],
                                  "field": "stateType"}]
    assert reload(run).state_type == "SCHEDULED"


def test_delete_a_run(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    payload = ok(gql(login(world_a.users[Role.DEVELOPER]), DELETE, {"ws": "acme", "id": str(run.pk)}))["deleteFlowRun"]
    assert payload == {"ok": True, "errors": []}
    assert run_count(world_a) == 0


# --- Who may act --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "extra", "field"),
    [
        (CANCEL, {}, "cancelFlowRun"),
        (RESTART, {}, "restartFlowRun"),
        (MARK, {"state": "FAILED"}, "markFlowRun"),
        (DELETE, {}, "deleteFlowRun"),
    ],
)
def test_a_viewer_may_not_act_on_runs(world_a, dag_flow, document, extra, field):
    run = new_run(world_a, dag_flow)
    payload = ok(gql(login(world_a.users[Role.VIEWER]), document, {"ws": "acme", "id": str(run.pk), **extra}))[field]
    assert [e["code"] for e in payload["errors"]] == ["permission_denied"]
    stored = reload(run)
    assert (stored.state_type, stored.state_version) == ("SCHEDULED", run.state_version)


def test_a_viewer_may_not_quick_run(world_a, dag_flow):
    body = gql(login(world_a.users[Role.VIEWER]), QUICK_RUN,
               {"ws": "acme", "flow": str(dag_flow.pk), "parameters": '{"date": "x"}'})
    assert [e["code"] for e in ok(body)["quickRun"]["errors"]] == ["permission_denied"]
    assert run_count(world_a) == 0


def test_anonymous_actions_are_not_authenticated(world_a, dag_flow):
    run = new_run(world_a, dag_flow)
    for document, field in ((CANCEL, "cancelFlowRun"), (DELETE, "deleteFlowRun")):
        payload = ok(gql(login(), document, {"ws": "acme", "id": str(run.pk)}))[field]
        assert [e["code"] for e in payload["errors"]] == ["not_authenticated"]
    body = gql(login(), QUICK_RUN, {"ws": "acme", "flow": str(dag_flow.pk), "parameters": '{"date": "x"}'})
    assert [e["code"] for e in ok(body)["quickRun"]["errors"]] == ["not_authenticated"]
    assert reload(run).state_type == "SCHEDULED" and run_count(world_a) == 1


def test_a_malformed_id_is_not_found(world_a, dag_flow):
    payload = ok(gql(login(world_a.users[Role.OWNER]), CANCEL, {"ws": "acme", "id": "nope"}))["cancelFlowRun"]
    assert [e["code"] for e in payload["errors"]] == ["not_found"]


def test_a_restricted_projects_flows_and_runs_are_not_found_for_a_developer_without_a_grant(world_a):
    project = ProjectFactory(workspace=world_a.workspace, name="secret", is_restricted=True)
    flow = DagFlowVersionFactory(flow__project=project, flow__workspace=world_a.workspace).flow
    run = new_run(world_a, flow, role=Role.ADMIN)
    client = login(world_a.users[Role.DEVELOPER])
    body = gql(client, QUICK_RUN, {"ws": "acme", "flow": str(flow.pk), "parameters": '{"date": "x"}'})
    assert [e["code"] for e in ok(body)["quickRun"]["errors"]] == ["not_found"]
    payload = ok(gql(client, CANCEL, {"ws": "acme", "id": str(run.pk)}))["cancelFlowRun"]
    assert [e["code"] for e in payload["errors"]] == ["not_found"]
    assert reload(run).state_type == "SCHEDULED" and run_count(world_a) == 1
