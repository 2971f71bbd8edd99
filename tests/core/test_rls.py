"""C2: PostgreSQL row-level security is the second line of defence behind scoped queries."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from core.rls import POLICY, tenant_tables
from core.tenancy import enter_workspaces, enter_workspaces_reading, restore, rls_bypass, workspace_scope

# Row-level security is a PostgreSQL feature; the suite always runs on PostgreSQL (scripts/test).


def _scalar(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def test_app_role_is_not_superuser_not_bypassrls_and_owns_no_tenant_table(db):
    assert _scalar("SELECT current_user") == settings.RLS_APP_ROLE
    assert _scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
    assert _scalar("SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user") is False
    owned = _scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename = ANY(%s) AND tableowner = current_user", [tenant_tables()]
    )
    assert owned == 0


def test_every_tenant_table_has_forced_rls_with_using_and_check(db):
    tables = tenant_tables()
    accounts_tables = {"accounts_apikey", "accounts_invitation", "accounts_serviceaccount", "accounts_auditlogentry"}
    assert accounts_tables <= set(tables)
    for table in tables:
        enabled, forced = (
            _scalar("SELECT relrowsecurity FROM pg_class WHERE relname = %s", [table]),
            _scalar("SELECT relforcerowsecurity FROM pg_class WHERE relname = %s", [table]),
        )
        assert enabled and forced, table
        qual, check = None, None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT qual, with_check FROM pg_policies WHERE tablename = %s AND policyname = %s", [table, POLICY]
            )
            qual, check = cursor.fetchone()
        assert "app.workspace_id" in qual and "app.workspace_id" in check


def test_with_no_setting_a_raw_count_sees_nothing(world_a, world_b):
    with transaction.atomic():
        assert _scalar("SELECT count(*) FROM accounts_apikey") == 0
        with rls_bypass():
            assert _scalar("SELECT count(*) FROM accounts_apikey") == 10


def test_scope_shows_only_that_workspace(world_a, world_b):
    with transaction.atomic(), workspace_scope([world_a.workspace.pk]):
        ids = {row[0] for row in _rows("SELECT DISTINCT workspace_id FROM accounts_apikey")}
    assert ids == {world_a.workspace.pk}


def _rows(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def test_raw_insert_into_another_workspace_fails(world_a, world_b):
    with pytest.raises(ProgrammingError, match="row-level security"):
        with transaction.atomic(), workspace_scope([world_a.workspace.pk]):
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO accounts_serviceaccount"
                    " (id, workspace_id, name, description, role, created_at, is_active, is_restricted)"
                    " VALUES (%s, %s, 'sneaky', '', 'agent', now(), true, false)",
                    [uuid.uuid4(), world_b.workspace.pk],
                )


def test_update_cannot_move_a_row_into_another_workspace(world_a, world_b):
    with pytest.raises(ProgrammingError, match="row-level security"):
        with transaction.atomic(), workspace_scope([world_a.workspace.pk]):
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE accounts_serviceaccount SET workspace_id = %s WHERE workspace_id = %s",
                    [world_b.workspace.pk, world_a.workspace.pk],
                )


@pytest.mark.urls("tests.core.rls_urls")
def test_unscoped_orm_query_inside_a_request_of_a_returns_none_of_b(world_a, world_b):
    response = world_a.client(Role.OWNER).get(world_a.url("forgetful/"))
    assert response.status_code == 200, response.content
    body = response.json()
    a = str(world_a.workspace.pk)
    assert body["service_accounts"] == [a]
    assert body["api_keys"] == [a]
    assert set(body["audit"]) <= {a}


def test_scope_is_restored_after_the_request(world_a, world_b):
    with transaction.atomic():
        token = enter_workspaces([world_b.workspace.pk])
        world_a.client(Role.OWNER).get(world_a.url("members/"))
        assert _scalar("SELECT current_setting('app.workspace_id', true)") == str(world_b.workspace.pk)
        restore(token)


def test_entering_a_scope_can_read_a_value_in_the_same_statement(world_a, world_b):
    """enter_workspaces_reading: the scope and one value in one statement; entering the same scope
    right after costs nothing; restoring the token brings the previous scope back."""
    with transaction.atomic():
        outer = enter_workspaces([world_b.workspace.pk])
        with CaptureQueriesContext(connection) as ctx:
            token, value = enter_workspaces_reading([world_a.workspace.pk], "(SELECT %s::int + 1)", [41])
            assert enter_workspaces([world_a.workspace.pk]) == (str(world_a.workspace.pk), "off")
        assert value == 42
        assert len(ctx.captured_queries) == 1 and "set_config" in ctx.captured_queries[0]["sql"]
        assert _scalar("SELECT current_setting('app.workspace_id', true)") == str(world_a.workspace.pk)
        assert {r[0] for r in _rows("SELECT DISTINCT workspace_id::text FROM accounts_apikey")} == {
            str(world_a.workspace.pk)}
        restore(token)
        assert _scalar("SELECT current_setting('app.workspace_id', true)") == str(world_b.workspace.pk)
        restore(outer)
