"""The /graphql endpoint itself: CSRF on session POSTs (B7), GET never mutates, malformed requests are
400 with a message, depth/cost limits and introspection (B8) are enforced before execution, and an
unexpected failure is answered without its details."""

from __future__ import annotations

import pytest
from graphql import get_introspection_query

from accounts import selectors
from accounts.models import Role, ServiceAccount, Workspace
from core.tenancy import rls_bypass
from tests.accounts.test_graphql import GRAPHQL_URL, error_codes, gql, login, ok

CREATE_SA = 'mutation { createServiceAccount(workspace: "acme", name: "ci", role: "agent") { errors { code } } }'


def _service_account_names(world) -> list[str]:  # type: ignore[no-untyped-def]
    with rls_bypass():
        return sorted(ServiceAccount.objects.for_workspace(world.workspace).values_list("name", flat=True))


# --- CSRF (B7) -----------------------------------------------------------------------------------


def test_session_post_without_csrf_token_is_403_and_runs_nothing(world_a):
    client = login(world_a.users[Role.ADMIN], enforce_csrf_checks=True)
    response = client.post(GRAPHQL_URL, {"query": CREATE_SA}, content_type="application/json")
    assert response.status_code == 403
    assert _service_account_names(world_a) == ["agent"]


def test_session_post_with_the_csrf_token_runs(world_a):
    client = login(world_a.users[Role.ADMIN], enforce_csrf_checks=True)
    # Any GET of the endpoint hands out the CSRF cookie the web app echoes back in a header.
    client.get(GRAPHQL_URL, {"query": "{ viewer { email } }"}, HTTP_ACCEPT="application/json")
    token = client.cookies["csrftoken"].value
    response = client.post(GRAPHQL_URL, {"query": CREATE_SA}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200 and response.json()["data"]["createServiceAccount"]["errors"] == []
    assert _service_account_names(world_a) == ["agent", "ci"]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8000", "http://localhost:8000", "http://testserver:8000",
                                    "https://testserver"])
def test_a_session_post_from_another_origin_is_403_even_with_the_token(world_a, origin):
    """Only the served origin (and FLOWDECK_PUBLIC_URL) is trusted: not a fixed port 8000 whatever
    the server's address, not another port or scheme of the same host."""
    client = login(world_a.users[Role.ADMIN], enforce_csrf_checks=True)
    client.get(GRAPHQL_URL, {"query": "{ viewer { email } }"}, HTTP_ACCEPT="application/json")
    token = client.cookies["csrftoken"].value
    response = client.post(GRAPHQL_URL, {"query": CREATE_SA}, content_type="application/json", HTTP_X_CSRFTOKEN=token,
                           HTTP_ORIGIN=origin)
    assert response.status_code == 403, response.content
    assert _service_account_names(world_a) == ["agent"]
    same = client.post(GRAPHQL_URL, {"query": CREATE_SA}, content_type="application/json", HTTP_X_CSRFTOKEN=token,
                       HTTP_ORIGIN="http://testserver")
    assert same.status_code == 200 and _service_account_names(world_a) == ["agent", "ci"]


def test_api_keys_do_not_sign_in_to_graphql(world_a):
    client = login()
    body = client.post(
        GRAPHQL_URL, {"query": "{ viewer { email } workspaces { slug } }"}, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world_a.keys[Role.OWNER]}",
    ).json()
    assert body == {"data": {"viewer": None, "workspaces": []}}


# --- GET -----------------------------------------------------------------------------------------


def test_get_runs_queries(world_a):
    response = login(world_a.users[Role.VIEWER]).get(
        GRAPHQL_URL, {"query": "{ viewer { email } }"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": {"email": "viewer@acme.example.com"}}}


def test_get_never_runs_a_mutation(world_a):
    response = login(world_a.users[Role.ADMIN]).get(GRAPHQL_URL, {"query": CREATE_SA}, HTTP_ACCEPT="application/json")
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "method_not_allowed"
    assert "POST" in response.json()["errors"][0]["message"]
    assert _service_account_names(world_a) == ["agent"]


def test_get_cannot_pick_a_mutation_by_operation_name(world_a):
    document = f"query Q {{ viewer {{ email }} }} mutation M {CREATE_SA[len('mutation '):]}"
    response = login(world_a.users[Role.ADMIN]).get(
        GRAPHQL_URL, {"query": document, "operationName": "M"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 405
    assert _service_account_names(world_a) == ["agent"]


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_are_405(world_a, method):
    response = getattr(login(world_a.users[Role.ADMIN]), method)(GRAPHQL_URL)
    assert response.status_code == 405


# --- Malformed requests --------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "message"), [
    ("{not json", "not valid JSON"),
    ('["a", "list"]', "JSON object"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    ('{"query": 42}', "'query' must be a string"),
    ('{"query": "{ viewer { email } }", "variables": [1]}', "'variables' must be a JSON object"),
    ('{"query": "{ viewer { email } }", "variables": "not json"}', "Variables are invalid JSON"),
    ('{"query": "{ viewer { email } }", "operationName": 7}', "'operationName' must be a string"),
    ("{}", "Must provide query string"),
])
def test_malformed_bodies_are_400_with_a_message(world_a, body, message):
    response = login(world_a.users[Role.OWNER]).post(GRAPHQL_URL, body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert message in error["message"] and error["extensions"]["code"] == "malformed_request"


def test_graphql_content_type_with_bytes_that_are_not_text_is_400(world_a):
    response = login(world_a.users[Role.OWNER]).post(GRAPHQL_URL, b"\xff{", content_type="application/graphql")
    assert response.status_code == 400 and response.json()["errors"][0]["extensions"]["code"] == "malformed_request"


def test_graphql_content_type_runs_the_query(world_a):
    response = login(world_a.users[Role.OWNER]).post(
        GRAPHQL_URL, "{ viewer { email } }", content_type="application/graphql"
    )
    assert response.json() == {"data": {"viewer": {"email": "owner@acme.example.com"}}}


def test_a_document_nested_beyond_reading_is_400(world_a):
    document = "{" + "viewer {" * 5000 + "email" + "}" * 5001
    body = gql(login(world_a.users[Role.OWNER]), document, status=400)
    assert body["errors"] and "data" not in body


def test_fragment_cycles_are_rejected_not_crashed(world_a):
    document = "query { viewer { ...A } } fragment A on User { email ...B } fragment B on User { ...A }"
    body = gql(login(world_a.users[Role.OWNER]), document, status=400)
    assert any("cycle" in e["message"].lower() or "spread" in e["message"].lower() for e in body["errors"])


# --- Depth and cost limits (B8) ------------------------------------------------------------------

DEEP = "{ workspaces { members { user { email } } } }"  # depth 4


def test_depth_limit(world_a, settings):
    settings.GRAPHQL_MAX_DEPTH = 3
    client = login(world_a.users[Role.OWNER])
    refused = gql(client, DEEP, status=400)
    allowed = gql(client, "{ workspaces { members { role } } }")
    assert error_codes(refused) == ["query_too_deep"]
    assert "4 levels deep; the limit is 3" in refused["errors"][0]["message"]
    assert ok(allowed)["workspaces"][0]["members"]


def test_depth_counts_fragments(world_a, settings):
    settings.GRAPHQL_MAX_DEPTH = 3
    document = "{ workspaces { ...W } } fragment W on Workspace { members { ... on Member { user { email } } } }"
    assert error_codes(gql(login(world_a.users[Role.OWNER]), document, status=400)) == ["query_too_deep"]


AUDIT = "query($n: Int) { workspace(slug: \"acme\") { auditLog(first: $n) { edges { node { id action } } } } }"


def test_cost_limit_lets_a_small_page_through(world_a, settings):
    settings.GRAPHQL_MAX_COST = 100
    body = gql(login(world_a.users[Role.OWNER]), AUDIT, {"n": 10})  # costs 2 + 10 * 4
    assert ok(body)["workspace"]["auditLog"] == {"edges": []}


@pytest.mark.parametrize("variables", [
    {"n": 50},
    {},  # no value: the argument's default page of 50 counts
    {"n": None},  # null asks for the default page too
])
def test_cost_limit_multiplies_pages(world_a, settings, variables):
    settings.GRAPHQL_MAX_COST = 100
    body = gql(login(world_a.users[Role.OWNER]), AUDIT, variables, status=400)
    assert error_codes(body) == ["query_too_costly"]
    assert body["errors"][0]["extensions"]["cost"] == 2 + 50 * 4
    assert "costs 202; the limit is 100" in body["errors"][0]["message"]


def test_cost_limit_reads_literal_first_and_aliases(world_a, settings):
    settings.GRAPHQL_MAX_COST = 100
    document = """{ workspace(slug: "acme") {
        a: auditLog(first: 20) { edges { node { id } } } b: auditLog(first: 15) { edges { node { id } } } } }"""
    body = gql(login(world_a.users[Role.OWNER]), document, status=400)
    assert body["errors"][0]["extensions"] == {"code": "query_too_costly", "cost": 1 + (1 + 20 * 3) + (1 + 15 * 3),
                                              "maxCost": 100}


def test_limits_are_checked_before_anything_runs(world_a, settings):
    settings.GRAPHQL_MAX_COST = 2
    body = gql(login(world_a.users[Role.ADMIN]), CREATE_SA, status=400)
    assert error_codes(body) == ["query_too_costly"]
    assert _service_account_names(world_a) == ["agent"]


# --- Introspection (B8) --------------------------------------------------------------------------


@pytest.mark.parametrize("document", ["{ __schema { types { name } } }", '{ __type(name: "User") { name } }'])
def test_introspection_off(world_a, settings, document):
    settings.GRAPHQL_INTROSPECTION = False
    body = gql(login(world_a.users[Role.OWNER]), document, status=400)
    assert error_codes(body) == ["introspection_disabled"]


def test_typename_stays_available_without_introspection(world_a, settings):
    settings.GRAPHQL_INTROSPECTION = False
    body = gql(login(world_a.users[Role.OWNER]), "{ viewer { __typename email } }")
    assert ok(body)["viewer"]["__typename"] == "User"


def test_full_introspection_query_works_when_allowed(world_a, settings):
    settings.GRAPHQL_INTROSPECTION = True
    data = ok(gql(login(), get_introspection_query(descriptions=True)))
    names = {t["name"] for t in data["__schema"]["types"]}
    assert {"Workspace", "Member", "ApiKey", "AuditLogConnection", "Error"} <= names


# --- Unexpected failures -------------------------------------------------------------------------


def test_a_bug_is_logged_and_answered_without_details(world_a, monkeypatch, caplog):
    def broken(principal):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selectors, "membership_list", broken)
    body = gql(login(world_a.users[Role.OWNER]), '{ viewer { email } workspace(slug: "acme") { slug members { id } } }')
    assert error_codes(body) == ["internal_error"]
    assert "secret internals" not in str(body) and body["errors"][0]["path"] == ["workspace", "members"]
    assert "secret internals" in caplog.text
    # members is non-null, so the error nulls the nearest nullable parent and nothing else.
    assert body["data"] == {"viewer": {"email": "owner@acme.example.com"}, "workspace": None}


def test_an_error_under_a_non_null_root_list_nulls_the_data(world_a, monkeypatch):
    def broken(principal):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "membership_list", broken)
    body = gql(login(world_a.users[Role.OWNER]), "{ workspaces { slug members { id } } }")
    assert error_codes(body) == ["internal_error"] and body["data"] is None
    assert body["errors"][0]["path"] == ["workspaces", 0, "members"]


def test_a_bug_outside_any_field_is_a_masked_500(world_a, monkeypatch):
    from config import graphql_view

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("executor internals")

    monkeypatch.setattr(graphql_view, "execute", broken)
    body = gql(login(world_a.users[Role.OWNER]), "{ viewer { email } }", status=500)
    assert body == {"errors": [{"message": "Internal server error.", "extensions": {"code": "internal_error"}}]}


def test_a_bug_in_a_mutation_rolls_the_request_back(world_a, monkeypatch):
    from accounts.graphql import mutations

    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(mutations.service_accounts, "service_account_delete", broken)
    document = """mutation($id: ID!) {
      a: updateWorkspace(workspace: "acme", name: "Renamed") { errors { code } }
      b: deleteServiceAccount(workspace: "acme", id: $id) { ok errors { code } }
    }"""
    body = gql(login(world_a.users[Role.OWNER]), document, {"id": str(world_a.agent.pk)})
    assert error_codes(body) == ["internal_error"] and body["data"]["b"] is None
    assert Workspace.objects.get(pk=world_a.workspace.pk).name == "Acme"


def test_typename_counts_like_any_field_and_aliases_each_count(world_a, settings):
    """5,000 aliased __typename used to cost nothing (and seconds of server time to answer)."""
    settings.GRAPHQL_MAX_COST = 2000
    flood = "{ " + " ".join(f"t{i}: __typename" for i in range(5000)) + " }"
    body = gql(login(world_a.users[Role.OWNER]), flood, status=400)
    assert body["errors"][0]["extensions"] == {"code": "query_too_costly", "cost": 5000, "maxCost": 2000}
    assert ok(gql(login(world_a.users[Role.OWNER]), "{ viewer { __typename email } }"))["viewer"]["email"]


def test_anonymous_callers_get_a_tighter_cost_cap(world_a, settings):
    settings.GRAPHQL_MAX_COST, settings.GRAPHQL_MAX_COST_ANONYMOUS = 2000, 100
    document = "{ " + " ".join(f"t{i}: __typename" for i in range(150)) + " }"
    anonymous = gql(login(None), document, status=400)
    assert anonymous["errors"][0]["extensions"] == {"code": "query_too_costly", "cost": 150, "maxCost": 100}
    signed_in = ok(gql(login(world_a.users[Role.VIEWER]), document))
    assert len(signed_in) == 150
