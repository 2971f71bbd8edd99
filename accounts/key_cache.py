"""Verified API keys, remembered briefly in process so that a warm key costs no query of its own (B2).

An entry maps the SHA-256 of a presented secret to what its Principal needs (field values of the
key, its workspace, user or service account, and the effective role). It is trusted for
``API_KEY_CACHE_SECONDS`` and only while its workspace's *generation* (the ``AuthGeneration`` row)
is the one it was verified under. Every change that can take access away (a key revoked, rotated,
expired early or deleted; a role changed; a member removed; a user or service account deactivated
or deleted; a workspace deleted) moves that generation with :func:`bump`, in the same transaction as
the change: both commit together, so the very next request in any process sees the new generation
and verifies in the database. A change rolled back moves nothing.

Reading the generation is a database read but, on the agents' hot path, not a round trip of its
own: the workspace-scoped REST views read it in the statement that sets the request's row-level
security scope (accounts/api/guard.py). Every other caller reads it with one small query.

Ordering is what makes it safe: a verification stores the generation read in the very statement
that reads the key and its workspace, so a change that committed before is in what was read, and
one that commits after moves the generation away from the stored one. Expiry is checked on each
hit against the stored ``expires_at``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Model, OuterRef, Subquery
from django.db.models.base import ModelState

from .models import ApiKey, AuthGeneration, ServiceAccount, User, Workspace

# A workspace never bumped has no row: its generation is NULL (None), which entries stored before
# its first bump match, and which no later value equals.
_TABLE = AuthGeneration._meta.db_table
GENERATION_SQL = f'(SELECT "value" FROM "{_TABLE}" WHERE "workspace" = %s)'  # noqa: S608 (a model's table)
_BUMP_SQL = (
    f'INSERT INTO "{_TABLE}" ("workspace", "value") VALUES (%s, 1) '  # noqa: S608 (a model's table)
    f'ON CONFLICT ("workspace") DO UPDATE SET "value" = "{_TABLE}"."value" + 1'
)


@dataclass
class _Entry:
    workspace_id: Any
    generation: int | None
    verified_at: float
    role: str
    key: dict[str, Any]
    workspace: dict[str, Any]
    user: dict[str, Any] | None
    service_account: dict[str, Any] | None


@dataclass(frozen=True)
class Verified:
    """A cache hit: fresh model instances (callers may change them freely) and the role."""

    api_key: ApiKey
    workspace: Workspace
    user: User | None
    service_account: ServiceAccount | None
    role: str


@dataclass(frozen=True)
class Candidate:
    """A fresh entry, not yet checked against its workspace's current generation."""

    secret_hash: str
    workspace_id: Any
    generation: int | None
    entry: _Entry

    def verified(self) -> Verified:
        """What the entry holds (fresh instances), whether or not it is still valid."""
        return _verified(self.entry)

    def confirm(self, current_generation: int | None) -> bool:
        """Whether the workspace is still at the generation the entry was verified under; the
        entry is dropped when it is not."""
        if current_generation == self.generation:
            return True
        forget(self.secret_hash)
        return False


_lock = threading.Lock()
_entries: OrderedDict[str, _Entry] = OrderedDict()


def enabled() -> bool:
    return settings.API_KEY_CACHE_SECONDS > 0


def clear() -> None:
    with _lock:
        _entries.clear()


def forget(secret_hash: str) -> None:
    with _lock:
        _entries.pop(secret_hash, None)


# --- Generations ---------------------------------------------------------------------------------


_WORKSPACE = AuthGeneration._meta.get_field("workspace")


def _db_id(workspace_id: Any) -> Any:
    # As the column stores it (SQLite keeps UUIDs as 32 hex digits).
    return _WORKSPACE.get_db_prep_value(_WORKSPACE.to_python(workspace_id), connection)


def generation_read(workspace_id: Any) -> tuple[str, list[Any]]:
    """An SQL expression and its parameters that read the workspace's current generation."""
    return GENERATION_SQL, [_db_id(workspace_id)]


def generation(workspace_id: Any) -> int | None:
    """The workspace's current generation (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {GENERATION_SQL}", [_db_id(workspace_id)])  # noqa: S608 (a constant)
        return cursor.fetchone()[0]


def generation_of(workspace_field: str) -> Subquery:
    """The generation of the workspace in ``workspace_field`` of the outer query, as a column."""
    return Subquery(AuthGeneration.objects.filter(workspace=OuterRef(workspace_field)).values("value")[:1])


_PENDING = "_flowdeck_auth_bumps"


def bump(workspace_id: Any) -> None:
    """Invalidate every cached key of this workspace, in every process, as the current transaction
    commits (at once when there is none). Call it after the change it announces: without a
    transaction, a verification between the two statements would be stored under the new
    generation with the old access."""
    workspace_id = str(workspace_id)
    if connection.in_atomic_block:
        # Once per workspace per transaction. The hooks list is replaced on commit, rollback and
        # savepoint rollback, exactly the events that can undo a bump already made.
        hooks = connection.run_on_commit
        pending = getattr(connection, _PENDING, None)
        if pending is None or pending[0] is not hooks:
            pending = (hooks, set())
            setattr(connection, _PENDING, pending)
        if workspace_id in pending[1]:
            return
        pending[1].add(workspace_id)
    with connection.cursor() as cursor:
        cursor.execute(_BUMP_SQL, [_db_id(workspace_id)])


# --- Entries -------------------------------------------------------------------------------------


def _snapshot(instance: Model | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    return {name: value for name, value in instance.__dict__.items() if not name.startswith("_")}


def _rebuild(model: type[Model], values: dict[str, Any]) -> Any:
    # What Model.from_db does, without __init__: a loaded row, not a new one.
    instance = model.__new__(model)
    instance.__dict__.update(values)
    instance._state = ModelState()
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance


_KEY_WORKSPACE = ApiKey._meta.get_field("workspace")
_KEY_USER = ApiKey._meta.get_field("user")
_KEY_SERVICE_ACCOUNT = ApiKey._meta.get_field("service_account")


def _verified(entry: _Entry) -> Verified:
    key = _rebuild(ApiKey, entry.key)
    workspace = _rebuild(Workspace, entry.workspace)
    user = None if entry.user is None else _rebuild(User, entry.user)
    account = None if entry.service_account is None else _rebuild(ServiceAccount, entry.service_account)
    _KEY_WORKSPACE.set_cached_value(key, workspace)
    _KEY_USER.set_cached_value(key, user)
    _KEY_SERVICE_ACCOUNT.set_cached_value(key, account)
    return Verified(api_key=key, workspace=workspace, user=user, service_account=account, role=entry.role)


def lookup(secret_hash: str) -> Candidate | None:
    """This key's entry if it is younger than ``API_KEY_CACHE_SECONDS``; it still has to be
    confirmed against the workspace's current generation (:meth:`Candidate.confirm`)."""
    if not enabled():
        return None
    with _lock:
        entry = _entries.get(secret_hash)
        if entry is None:
            return None
        if time.monotonic() - entry.verified_at >= settings.API_KEY_CACHE_SECONDS:
            del _entries[secret_hash]
            return None
        _entries.move_to_end(secret_hash)
    return Candidate(secret_hash=secret_hash, workspace_id=entry.workspace_id, generation=entry.generation,
                     entry=entry)


def store(secret_hash: str, key: ApiKey, role: str, generation: int | None) -> None:
    """Remember a key just verified in the database, under the generation read in the same
    statement as the key."""
    if not enabled():
        return
    workspace, user, account = _snapshot(key.workspace), _snapshot(key.user), _snapshot(key.service_account)
    assert workspace is not None
    entry = _Entry(workspace_id=key.workspace_id, generation=generation, verified_at=time.monotonic(), role=role,
                   key=_snapshot(key) or {}, workspace=workspace, user=user, service_account=account)
    with _lock:
        _entries[secret_hash] = entry
        _entries.move_to_end(secret_hash)
        while len(_entries) > settings.API_KEY_CACHE_SIZE:
            _entries.popitem(last=False)


def mark_used(secret_hash: str, at: datetime) -> None:
    """Remember that the key's last use was stamped (so a hit stamps at most once per window)."""
    with _lock:
        entry = _entries.get(secret_hash)
        if entry is not None:
            entry.key = {**entry.key, "last_used_at": at}
