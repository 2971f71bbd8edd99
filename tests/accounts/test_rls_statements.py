"""Row-level-security set-up costs one statement per key-authenticated request (issue 12).

The guard scopes the request's transaction once; ``workspace_scope`` and ``rls_bypass`` inside a
transaction already scoped (resp. bypassing) issue nothing; the request's own transaction ends with
the view, so nothing is restored. The tracking behind that is checked against what PostgreSQL
really has: a rolled-back savepoint, a new transaction, a reused atomic block.

These tests use ``transactional_db``: each request then runs in a transaction of its own, as in
production (inside a test transaction the request is a savepoint and the guard must restore).
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from core.tenancy import enter_workspaces, restore, rls_bypass, workspace_scope
from tests.conftest import WorkspaceWorld, build_world
from tests.orchestration.api.conftest import METADATA, register


@pytest.fixture
def acme(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("acme")


@pytest.fixture
def globex(transactional_db) -> WorkspaceWorld:  # type: ignore[no-untyped-def]
    return build_world("globex")


def _set_configs(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "set_config" in q["sql"]]


def _key_queries(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if "accounts_apikey" in q["sql"]]


def _setting() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(current_setting('app.workspace_id', true), '')")
        return cursor.fetchone()[0]


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 (a constant table name)
        return cursor.fetchone()[0]


# --- Per request ---------------------------------------------------------------------------------


def test_a_key_authenticated_get_runs_one_set_config_and_no_key_query_on_a_warm_cache(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    for _ in range(2):  # first sight records the key's workspace; the second verifies under its generation
        assert client.get(acme.url("members/")).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(acme.url("members/"))
    assert response.status_code == 200, response.content
    assert len(_set_configs(ctx)) == 1, _set_configs(ctx)
    assert _key_queries(ctx) == []


def test_a_cold_key_pays_the_lookup_and_the_bypass(acme, settings):
    settings.API_KEY_CACHE_SECONDS = 0  # the cache off: every request verifies in the database
    client = acme.client(Role.DEVELOPER, key=True)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(acme.url("members/")).status_code == 200
    # bypass on and off around the lookup, then the guard's scope (before issue 12: 5–6 statements)
    assert len(_set_configs(ctx)) == 3, _set_configs(ctx)
    assert len([q for q in _key_queries(ctx) if q.startswith("SELECT")]) == 1


def test_an_agent_set_state_runs_one_set_config_and_no_key_query_on_a_warm_cache(acme):
    developer = acme.client(Role.DEVELOPER)
    flow = register(developer, acme, {**METADATA}).json()["flow"]
    run = developer.post(acme.url("flow-runs/"), {"flow": flow["id"]}, format="json").json()
    agent_client = acme.client(Role.AGENT)
    agent = agent_client.post(acme.url("agents/"), {"name": "a1", "type": "process", "labels": ["prod"]},
                              format="json")
    assert agent.status_code == 201, agent.content
    claim = agent_client.post(acme.url(f"agents/{agent.json()['id']}/claim/"), {"limit": 1}, format="json")
    [claimed] = claim.json()["results"]
    with CaptureQueriesContext(connection) as ctx:
        response = agent_client.post(
            acme.url(f"flow-runs/{run['id']}/set-state/"),
            {"state": {"type": "RUNNING"}, "attempt": claimed["attempt"]},
            format="json", HTTP_IDEMPOTENCY_KEY="set-state-running-1",
        )
    assert response.status_code == 200, response.content
    assert response.json()["state"]["type"] == "RUNNING"
    assert len(_set_configs(ctx)) == 1, _set_configs(ctx)
    assert _key_queries(ctx) == []


# --- The tracking against what PostgreSQL has ----------------------------------------------------


class Boom(Exception):
    pass


def test_a_rolled_back_savepoint_does_not_leave_the_tracked_scope_wrong(acme, globex):
    a, b = str(acme.workspace.pk), str(globex.workspace.pk)
    with transaction.atomic():
        enter_workspaces([a])
        with pytest.raises(Boom), transaction.atomic():
            enter_workspaces([b])
            assert _setting() == b
            raise Boom
        assert _setting() == a  # the rollback to the savepoint reverted the setting
        with workspace_scope([b]):
            assert _setting() == b  # set again: the tracking did not believe b was still in force
            assert {str(w) for (w,) in _rows("SELECT DISTINCT workspace_id FROM accounts_apikey")} == {b}
        assert _setting() == a
        with workspace_scope([a]):
            assert _setting() == a


def test_a_rolled_back_savepoint_inside_the_same_scope_keeps_the_scope(acme, globex):
    a = str(acme.workspace.pk)
    with transaction.atomic(), workspace_scope([a]):
        with pytest.raises(Boom), transaction.atomic(), rls_bypass():
            assert _count("accounts_apikey") == 10  # both workspaces' keys
            raise Boom
        with workspace_scope([a]):
            assert _setting() == a
            assert {str(w) for (w,) in _rows("SELECT DISTINCT workspace_id FROM accounts_apikey")} == {a}


def test_a_released_savepoint_keeps_its_setting_and_the_tracking_agrees(acme, globex):
    a, b = str(acme.workspace.pk), str(globex.workspace.pk)
    with transaction.atomic():
        enter_workspaces([a])
        with transaction.atomic():
            enter_workspaces([b])
        assert _setting() == b
        with workspace_scope([b]):
            assert _setting() == b
        with workspace_scope([a]):
            assert _setting() == a


def test_nested_scopes_of_the_same_workspace_issue_no_statement(acme):
    a = acme.workspace.pk
    with transaction.atomic():
        enter_workspaces([a])
        with CaptureQueriesContext(connection) as ctx:
            with workspace_scope([a]), transaction.atomic(), workspace_scope([a]):
                token = enter_workspaces([a])
                restore(token)
        assert _set_configs(ctx) == []
        with rls_bypass(), CaptureQueriesContext(connection) as ctx, rls_bypass(), transaction.atomic(), rls_bypass():
            assert _count("accounts_apikey") == 5
        assert _set_configs(ctx) == []
        assert _count("accounts_serviceaccount") == 1  # the bypass ended with its outer block


def test_a_new_transaction_starts_unscoped_and_is_scoped_again(acme):
    a = acme.workspace.pk
    block = transaction.atomic()  # one atomic object entered twice, as a decorated service does
    for _ in range(2):
        with block:
            assert _count("accounts_apikey") == 0  # no workspace, no rows: nothing carried over
            with CaptureQueriesContext(connection) as ctx:
                enter_workspaces([a])
            assert len(_set_configs(ctx)) == 1
            assert _count("accounts_apikey") == 5


def test_rls_returns_no_rows_without_a_workspace_after_a_scoped_request(acme):
    client = acme.client(Role.DEVELOPER, key=True)
    for _ in range(3):
        assert client.get(acme.url("members/")).status_code == 200
    with transaction.atomic():
        assert _count("accounts_apikey") == 0
        assert _count("accounts_serviceaccount") == 0


def test_inside_a_test_transaction_the_guard_restores_the_callers_scope(acme, globex):
    b = str(globex.workspace.pk)
    client = acme.client(Role.DEVELOPER, key=True)
    with transaction.atomic():
        token = enter_workspaces([b])
        assert client.get(acme.url("members/")).status_code == 200
        assert _setting() == b
        restore(token)


def _rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()
