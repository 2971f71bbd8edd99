"""What Flowdeck needs of the PostgreSQL server's upkeep (docs/operations.md, "Database upkeep").

The agents' hot statements are prepared once per pooled connection and run on the plan PostgreSQL
chose from the tables' statistics. Nothing but (auto)vacuum's ANALYZE gathers those. With
autovacuum off, a table is priced as if it held its first few rows for ever: on such a database the
bench saw every state change read all runs of its workspace through the wrong index, more and more
slowly as runs accrued (docs/performance.md, "Twelfth round"). So a server, or a Flowdeck table,
with autovacuum off gets a warning.

Database checks run only when Django is given a database: ``manage.py migrate`` and
``manage.py check --database default``.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import connections

DOCS = 'docs/operations.md, "Database upkeep"'
_SETTINGS = (
    "SELECT current_setting('autovacuum'), current_setting('track_counts'), "
    "array(SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
    "AND c.relkind = 'r' AND c.reloptions @> ARRAY['autovacuum_enabled=false'] ORDER BY c.relname)"
)


def upkeep_warnings(autovacuum: str, track_counts: str, tables_without: list[str]) -> list[CheckMessage]:
    """The warnings for a server whose ``autovacuum`` and ``track_counts`` settings are as given,
    where ``tables_without`` have autovacuum switched off by a storage parameter."""
    consequence = ("the planner then keeps pricing tables by stale statistics, and a run's state change can "
                   "read every run of its workspace")
    found: list[CheckMessage] = []
    for setting, value in (("autovacuum", autovacuum), ("track_counts", track_counts)):
        if value != "on":
            found.append(Warning(
                f"{setting} is off on the PostgreSQL server: no table is vacuumed or analyzed by itself; "
                f"{consequence}.",
                hint=f"Turn it on (ALTER SYSTEM SET {setting} = on; SELECT pg_reload_conf();), or run "
                     f"VACUUM (ANALYZE) on Flowdeck's database every few minutes. See {DOCS}.",
                id="flowdeck.W101",
            ))
    if tables_without:
        shown = ", ".join(tables_without[:5]) + (", …" if len(tables_without) > 5 else "")
        found.append(Warning(
            f"autovacuum is switched off for {len(tables_without)} table(s) ({shown}); {consequence}.",
            hint=f"ALTER TABLE … RESET (autovacuum_enabled); for each. See {DOCS}.",
            id="flowdeck.W102",
        ))
    return found


@register(Tags.database)
def database_upkeep(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found: list[CheckMessage] = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue  # SQLite (embedded mode) keeps its own statistics
        with connection.cursor() as cursor:
            cursor.execute(_SETTINGS)
            autovacuum, track_counts, tables_without = cursor.fetchone()
        found += upkeep_warnings(autovacuum, track_counts, list(tables_without))
    return found
