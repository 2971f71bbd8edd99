"""The database upkeep check (core/db_checks.py): a PostgreSQL server, or a Flowdeck table, with
autovacuum off gets a warning from ``migrate`` and ``check --database``; nothing otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import environ
import psycopg
import pytest
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.db import connection

from core.db_checks import upkeep_warnings

pytestmark = pytest.mark.django_db


def test_a_server_with_autovacuum_and_track_counts_on_and_no_table_excepted_is_fine():
    assert upkeep_warnings("on", "on", []) == []


@pytest.mark.parametrize("setting", ["autovacuum", "track_counts"])
def test_either_setting_off_is_a_warning_naming_it_and_the_way_out(setting):
    values = {"autovacuum": "on", "track_counts": "on", setting: "off"}
    (warning,) = upkeep_warnings(values["autovacuum"], values["track_counts"], [])
    assert warning.id == "flowdeck.W101"
    assert warning.msg.startswith(f"{setting} is off on the PostgreSQL server")
    assert f"ALTER SYSTEM SET {setting} = on" in warning.hint and "VACUUM (ANALYZE)" in warning.hint


def test_tables_with_autovacuum_switched_off_are_named_at_most_five():
    tables = [f"orchestration_t{i}" for i in range(7)]
    (warning,) = upkeep_warnings("on", "on", tables)
    assert warning.id == "flowdeck.W102"
    assert "7 table(s) (orchestration_t0, orchestration_t1, orchestration_t2, orchestration_t3, " \
           "orchestration_t4, …)" in warning.msg
    assert "orchestration_t5" not in warning.msg


@pytest.fixture
def table_without_autovacuum() -> Iterator[str]:
    """A Flowdeck table with autovacuum switched off by its storage parameter, for the test's
    length. Only the table's owner may (the role the test database was made with; the tests'
    connections use the app role), on a connection of its own."""
    db = connection.settings_dict
    owner = environ.Env().db("DATABASE_URL")["USER"]
    table = "orchestration_idempotencyrecord"
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"], user=owner,
                         password=db["PASSWORD"] or None, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        try:
            yield table
        finally:
            conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def _server_setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def test_the_check_reads_the_real_server_and_names_a_table_switched_off(table_without_autovacuum):
    found = run_checks(tags=[Tags.database], databases=["default"])
    ours = [m for m in found if m.id.startswith("flowdeck.W10")]
    # then: the table is named, and the server-wide warning is there exactly when the server is so set
    assert [m.id for m in ours if m.id == "flowdeck.W102"] == ["flowdeck.W102"]
    assert table_without_autovacuum in next(m.msg for m in ours if m.id == "flowdeck.W102")
    server_off = [s for s in ("autovacuum", "track_counts") if _server_setting(s) != "on"]
    assert sorted(m.msg.split()[0] for m in ours if m.id == "flowdeck.W101") == sorted(server_off)


def test_check_with_a_database_prints_it_and_without_one_asks_nothing(table_without_autovacuum):
    out, err = StringIO(), StringIO()
    call_command("check", "--database", "default", stdout=out, stderr=err)
    assert "flowdeck.W102" in out.getvalue() + err.getvalue()
    assert table_without_autovacuum in out.getvalue() + err.getvalue()
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "flowdeck.W10" not in out.getvalue() + err.getvalue()
