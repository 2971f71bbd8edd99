"""Tenancy plumbing: every tenant-owned row carries a workspace, and querying one without naming
the workspace is refused.

``Model.objects.for_workspace(ws)`` is the normal path. ``Model.objects.unscoped()`` is the loud
escape hatch for the few places that must look across workspaces (authentication, a user's own
workspace list); on PostgreSQL those places also need :func:`rls_bypass`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction


class UnscopedQueryError(RuntimeError):
    """A tenant model was queried without naming the workspace."""


class TenantManager(models.Manager):
    """The manager for tenant models: it refuses to build a queryset without a workspace."""

    def get_queryset(self) -> models.QuerySet:
        raise UnscopedQueryError(
            f"{self.model.__name__}.objects needs a workspace: use "
            f"{self.model.__name__}.objects.for_workspace(ws) (or .unscoped() where a cross-workspace "
            "read is really meant)."
        )

    def for_workspace(self, workspace: Any) -> models.QuerySet:
        return super().get_queryset().filter(workspace=workspace)

    def unscoped(self) -> models.QuerySet:
        return super().get_queryset()


class TenantModel(models.Model):
    """Abstract base of every tenant-owned model.

    ``all_objects`` is declared first so that it is the default manager Django's own machinery
    (related managers, cascades, the admin) uses; application code goes through ``objects``.
    """

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")

    all_objects = models.Manager()
    objects = TenantManager()

    class Meta:
        abstract = True
        default_manager_name = "all_objects"


def tenant_models() -> list[type[models.Model]]:
    from django.apps import apps

    return [m for m in apps.get_models() if issubclass(m, TenantModel)]


# What this connection's current transaction has set, so that a scope already in force costs no
# statement. A record is trusted only while Django's list of on-commit hooks is the very list that
# was current when the settings were made: Django replaces that list when the transaction commits
# or rolls back and when it rolls back to any savepoint (exactly the events that can revert a
# transaction-local setting), so a replaced list means "unknown, set again". Only transactions an
# atomic block owns are tracked (their end always goes through that replacement).
_TRACK = "_flowdeck_rls_tracked"


# These run several times per request: they look the connection up once (each attribute read
# through django.db.connection is a thread-local lookup of its own).
def _track_anchor(conn: Any) -> Any:
    if not conn.in_atomic_block or not conn.commit_on_exit or conn.needs_rollback:
        return None
    return conn.run_on_commit


def _known() -> dict[str, Any]:
    """The settings this transaction is known to have now (name -> value); empty when unknown."""
    conn = connections[DEFAULT_DB_ALIAS]
    tracked = getattr(conn, _TRACK, None)
    if tracked is None:
        return {}
    anchor, raw, values = tracked
    if anchor is not _track_anchor(conn) or raw is not conn.connection:
        return {}
    return values


def _remember(before: dict[str, Any], values: dict[str, str]) -> None:
    conn = connections[DEFAULT_DB_ALIAS]
    anchor = _track_anchor(conn)
    record = None if anchor is None else (anchor, conn.connection, {**before, **values})
    setattr(conn, _TRACK, record)


def _set_configs(values: dict[str, str], read: tuple[str, Sequence[Any]] | None = None) -> list[Any]:
    """Set transaction-local settings in one round trip; return their previous values, then the
    value of ``read`` (an SQL expression and its parameters) when given."""
    if not settings.IS_POSTGRES:
        return ["" for _ in values] + ([_read_alone(read)] if read is not None else [])
    columns = ", ".join("coalesce(current_setting(%s, true), ''), set_config(%s, %s, true)" for _ in values)
    params: list[Any] = []
    for name, value in values.items():
        params += [name, name, value]
    if read is not None:
        columns += ", " + read[0]
        params += list(read[1])
    before = _known()
    setattr(connection, _TRACK, None)  # unknown until the statement has run
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns}", params)  # noqa: S608 (only placeholders are interpolated)
        row = cursor.fetchone()
    _remember(before, values)
    return [row[i * 2] for i in range(len(values))] + ([row[-1]] if read is not None else [])


def _read_alone(read: tuple[str, Sequence[Any]]) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {read[0]}", list(read[1]))  # noqa: S608 (the caller's constant SQL)
        return cursor.fetchone()[0]


RlsToken = tuple[str, str]


def _ids(workspace_ids: Iterable[Any]) -> str:
    return ",".join(str(w) for w in workspace_ids)


def enter_workspaces(workspace_ids: Iterable[Any], *, custom_plans: bool = False) -> RlsToken:
    """Scope the rest of the current transaction to these workspaces for row-level security, with
    the bypass off. Returns what to hand to :func:`restore` when the scope ends. Costs nothing
    when this transaction is already scoped to exactly these workspaces.

    ``custom_plans``: the rest of the transaction plans each statement for its values (in the same
    statement). For what people read: lists and pages filter and sort by values whose selectivity
    varies (a state, a flow), and a prepared statement's generic plan, which assumes the average
    value and the average workspace, may read a big workspace's whole history for a page of it.
    The agents' hot path keeps generic plans, which skip planning (its statements are written to be
    cheap on any plan; tests/orchestration/api/test_hot_path_reads.py)."""
    wanted = _wanted(workspace_ids, custom_plans)
    if settings.IS_POSTGRES and _known() == wanted:
        return wanted["app.workspace_id"], "off"
    previous = _set_configs(wanted)
    return previous[0], previous[1]


def enter_workspaces_reading(workspace_ids: Iterable[Any], sql: str, params: Sequence[Any], *,
                             custom_plans: bool = False) -> tuple[RlsToken, Any]:
    """:func:`enter_workspaces`, and the value of one SQL expression read in the same statement
    (always run). The expression must not depend on the settings being made: it may be evaluated
    before them. Without PostgreSQL the expression is read on its own."""
    previous = _set_configs(_wanted(workspace_ids, custom_plans), read=(sql, params))
    return (previous[0], previous[1]), previous[-1]


def _wanted(workspace_ids: Iterable[Any], custom_plans: bool) -> dict[str, str]:
    wanted = {"app.workspace_id": _ids(workspace_ids), "app.rls_bypass": "off"}
    if custom_plans:
        wanted["plan_cache_mode"] = "force_custom_plan"
    return wanted


def _transaction_failed() -> bool:
    if not settings.IS_POSTGRES:
        return False
    conn = connections[DEFAULT_DB_ALIAS]
    raw = conn.connection
    if raw is None:
        return False
    from psycopg.pq import TransactionStatus

    return conn.needs_rollback or raw.info.transaction_status == TransactionStatus.INERROR


def restore(token: RlsToken) -> None:
    if _transaction_failed():
        return  # the rollback that follows discards the settings anyway
    wanted = {"app.workspace_id": token[0], "app.rls_bypass": token[1]}
    if settings.IS_POSTGRES and _known() == wanted:
        return
    _set_configs(wanted)


def restore_unless_request_ends(token: RlsToken) -> None:
    """:func:`restore`, except when the only open atomic block is the request's own
    (``ATOMIC_REQUESTS``): its transaction ends as the view returns, and the settings with it."""
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.in_atomic_block and conn.commit_on_exit and len(conn.atomic_blocks) == 1:
        return
    restore(token)


@contextlib.contextmanager
def workspace_scope(workspace_ids: Iterable[Any]) -> Iterator[None]:
    """Run a block scoped to these workspaces (in a transaction, opened here if need be). Inside a
    transaction already scoped to exactly these workspaces it issues no statement at all."""
    # A transaction opened here ends with the block, and the settings with it: no restore needed.
    owns_transaction = not transaction.get_connection().in_atomic_block
    # savepoint=False: an error rolls back the caller's transaction, which ends the scope too.
    with transaction.atomic(savepoint=False):
        token = enter_workspaces(workspace_ids)
        try:
            yield
        finally:
            if not owns_transaction:
                restore(token)


@contextlib.contextmanager
def rls_bypass() -> Iterator[None]:
    """Let the current transaction see every workspace's rows. Only for code that must look across
    tenants before a workspace is known (key authentication, invitation tokens, workspace
    creation). The block runs in a transaction (opened here if need be), since the setting is
    transaction-local. Inside a transaction already bypassing it issues no statement."""
    owns_transaction = not transaction.get_connection().in_atomic_block
    with transaction.atomic(savepoint=False):
        if settings.IS_POSTGRES and _known().get("app.rls_bypass") == "on":
            yield
            return
        (previous,) = _set_configs({"app.rls_bypass": "on"})
        try:
            yield
        finally:
            restore_needed = not owns_transaction and not _transaction_failed()
            if restore_needed and _known().get("app.rls_bypass") != previous:
                _set_configs({"app.rls_bypass": previous})
