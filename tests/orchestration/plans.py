"""Helpers for tests about query plans: fresh statistics, a flow's finished history, and the plan a
prepared statement runs on once PostgreSQL plans it generically (the pool's connections prepare
the hot statements on their second use)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import environ
from django.db import connection, transaction
from django.utils import timezone

from core.tenancy import rls_bypass
from orchestration.models import FlowRun, StateType
from tests.orchestration.factories import FlowRunFactory


def analyze_as_owner(*tables: str) -> None:
    """Fresh planner statistics of ``tables`` (the runs by default), as autovacuum leaves them.
    ANALYZE needs the table's owner (the role the test database was created with); the tests'
    connections use the app role."""
    import psycopg

    db = connection.settings_dict
    owner = environ.Env().db("DATABASE_URL")["USER"]
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"], user=owner,
                         password=db["PASSWORD"] or None, autocommit=True) as conn:
        for table in tables or ("orchestration_flowrun",):
            conn.execute(f"ANALYZE {table}")


def finished_history(version: Any, count: int) -> list[FlowRun]:
    """``count`` COMPLETED runs of ``version``'s flow, scheduled a day ago, inserted at once."""
    history = FlowRunFactory.build_batch(count, flow_version=version, flow=version.flow, workspace=version.workspace,
                                         state_type=StateType.COMPLETED,
                                         scheduled_start=timezone.now() - timedelta(days=1))
    with rls_bypass():
        FlowRun.objects.unscoped().bulk_create(history)
    return history


def generic_plan(sql: str, literals: Sequence[str]) -> str:
    """EXPLAIN of ``sql`` (``%s`` placeholders) prepared and planned generically, executed with
    ``literals`` (SQL text, one per placeholder), in the caller's workspace scope."""
    numbered = sql.replace("%s", "{}").format(*(f"${i + 1}" for i in range(sql.count("%s"))))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE fd_generic AS {numbered}")
        try:
            cursor.execute(f"EXPLAIN EXECUTE fd_generic({', '.join(literals)})")
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE fd_generic")
