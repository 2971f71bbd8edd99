"""PostgreSQL row-level security for every tenant table (C2).

After each ``migrate`` (run as the owner role) this makes sure that the application role may read
and write the tables, and that every table of a :class:`~core.tenancy.TenantModel` has RLS enabled
and *forced* (so even the owner is subject to it) with one policy: a row is visible and writable
only when its ``workspace_id`` is in the transaction's ``app.workspace_id`` list, or when the
transaction turned on the loud ``app.rls_bypass`` switch. Doing it here rather than in each
migration means a new tenant model is covered without anyone remembering to.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections

POLICY = "tenant_isolation"
# NULLIF turns "no setting" into NULL, and ANY(NULL) is never true: no workspace, no rows.
PREDICATE = (
    "workspace_id = ANY (string_to_array(NULLIF(current_setting('app.workspace_id', true), ''), ',')::uuid[]) "
    "OR current_setting('app.rls_bypass', true) = 'on'"
)


def tenant_tables() -> list[str]:
    from core.tenancy import tenant_models

    return sorted(m._meta.db_table for m in tenant_models())


def apply_rls(using: str = "default") -> None:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    app_role = settings.RLS_APP_ROLE
    if connection.settings_dict["USER"] == app_role:
        return  # only the owner role (which runs migrations) may change policies
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [app_role])
        if cursor.fetchone() is not None:
            cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{app_role}"')
            cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{app_role}"')
            cursor.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{app_role}"')
        for table in tenant_tables():
            cursor.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
            cursor.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
            cursor.execute(f'DROP POLICY IF EXISTS {POLICY} ON "{table}"')
            cursor.execute(
                f'CREATE POLICY {POLICY} ON "{table}" USING ({PREDICATE}) WITH CHECK ({PREDICATE})'
            )


def on_post_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    # post_migrate fires once per app; the last app's call is the one that sees every table.
    if sender.name == "core":
        apply_rls(using)
