"""Tenancy plumbing: every tenant-owned row carries a workspace, and querying one without naming
the workspace is refused.

``Model.objects.for_workspace(ws)`` is the normal path. ``Model.objects.unscoped()`` is the loud
escape hatch for the few places that must look across workspaces (authentication, a user's own
workspace list); on PostgreSQL those places also need :func:`rls_bypass`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction


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


def _set_configs(values: dict[str, str]) -> list[str]:
    """Set transaction-local settings in one round trip; return their previous values."""
    if not settings.IS_POSTGRES:
        return ["" for _ in values]
    columns = ", ".join("coalesce(current_setting(%s, true), ''), set_config(%s, %s, true)" for _ in values)
    params: list[str] = []
    for name, value in values.items():
        params += [name, name, value]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns}", params)  # noqa: S608 (only placeholders are interpolated)
        row = cursor.fetchone()
    return [row[i * 2] for i in range(len(values))]


RlsToken = tuple[str, str]


def enter_workspaces(workspace_ids: Iterable[Any]) -> RlsToken:
    """Scope the rest of the current transaction to these workspaces for row-level security, with
    the bypass off. Returns what to hand to :func:`restore` when the scope ends."""
    ids = ",".join(str(w) for w in workspace_ids)
    previous = _set_configs({"app.workspace_id": ids, "app.rls_bypass": "off"})
    return previous[0], previous[1]


def _transaction_failed() -> bool:
    if not settings.IS_POSTGRES:
        return False
    raw = connection.connection
    if raw is None:
        return False
    from psycopg.pq import TransactionStatus

    return connection.needs_rollback or raw.info.transaction_status == TransactionStatus.INERROR


def restore(token: RlsToken) -> None:
    if _transaction_failed():
        return  # the rollback that follows discards the settings anyway
    _set_configs({"app.workspace_id": token[0], "app.rls_bypass": token[1]})


@contextlib.contextmanager
def workspace_scope(workspace_ids: Iterable[Any]) -> Iterator[None]:
    """Run a block scoped to these workspaces (in a transaction, opened here if need be)."""
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
    transaction-local."""
    owns_transaction = not transaction.get_connection().in_atomic_block
    with transaction.atomic(savepoint=False):
        (previous,) = _set_configs({"app.rls_bypass": "on"})
        try:
            yield
        finally:
            if not owns_transaction and not _transaction_failed():
                _set_configs({"app.rls_bypass": previous})
