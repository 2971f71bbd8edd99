"""Idempotency keys for agent POSTs (D4, Stripe's model).

The first call with a key runs ``compute`` and stores its (status, response) in the same
transaction as its effects; a replay with the same key and body returns the stored response and
does nothing; the same key with another body is refused with 422. Concurrent identical calls are
serialised on the unique index (workspace, scope, key): the first inserts the record, the others
block on that insert until it commits, then read and return its response — so five concurrent
identical reports apply once. If ``compute`` raises, the record rolls back with the effects and a
retry computes afresh.

Three statements on the hot path: ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (or, for a
replay, that and one SELECT), ``compute``, one UPDATE storing the response. The rollback on error
is the caller's transaction's (a request's, ATOMIC_REQUESTS) unless the caller asks for a
savepoint: a caller that carries on in the same transaction after an error needs one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Field
from django.utils import timezone

from core.errors import InvalidInput, ServiceError
from core.tenancy import rls_bypass, workspace_scope
from core.transactions import rolled_back_whole
from orchestration.engine import db_now
from orchestration.models import IdempotencyRecord

MAX_KEY_LENGTH = 200
# Agents retry for minutes, not days; records older than this are purged by the retention tick.
IDEMPOTENCY_TTL = timedelta(hours=24)


class IdempotencyKeyReused(ServiceError):
    status_code = 422
    code = "idempotency_key_reused"


def request_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(stored: tuple[str, int, dict], digest: str, key: str) -> tuple[int, dict]:
    request_digest, status_code, response = stored
    if request_digest != digest:
        raise IdempotencyKeyReused(
            f"The idempotency key '{key}' was already used with a different request body; use a new key "
            "for a new request.",
            details={"idempotency_key": ["Reused with a different body."]},
        )
    return status_code, response


_TABLE = IdempotencyRecord._meta.db_table
# Blocks while a concurrent call holds the same key uncommitted; no row back when the key exists.
_INSERT = (
    f'INSERT INTO "{_TABLE}" (workspace_id, scope, key, request_hash, status_code, response, created_at) '  # noqa: S608 (table name from the model)
    "VALUES (%s, %s, %s, %s, 0, '{}', %s) ON CONFLICT (workspace_id, scope, key) DO NOTHING RETURNING id"
)
_STORE = f'UPDATE "{_TABLE}" SET status_code = %s, response = %s WHERE id = %s'  # noqa: S608


def _prep(field: str, value: Any) -> Any:
    """``value`` as the database takes it for ``field`` (UUIDs, times and JSON differ by backend)."""
    model_field = IdempotencyRecord._meta.get_field(field)
    assert isinstance(model_field, Field)
    return model_field.get_db_prep_save(value, connections[DEFAULT_DB_ALIAS])  # not the proxy: one lookup


def idempotent_call(
    *, workspace: Any, scope: str, key: str, body: dict, compute: Callable[[], tuple[int, dict]],
    savepoint: bool = True,
) -> tuple[int, dict]:
    """Run ``compute`` once per (workspace, scope, key); replays return what the first call returned.

    ``savepoint=False`` when any error raised here ends the caller's transaction with a rollback
    (a request: ATOMIC_REQUESTS, the errors become responses of a rolled-back request): the
    record and ``compute``'s effects then go with it, for two round trips less. Otherwise the
    call runs in a savepoint of its own, and a caller may carry on after an error."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"An idempotency key is 1–{MAX_KEY_LENGTH} characters.",
            code="invalid_idempotency_key",
            details={"idempotency_key": ["Invalid."]},
        )
    workspace_id = getattr(workspace, "pk", workspace)
    digest = request_hash(body)
    # savepoint=False: an error marks the caller's transaction for rollback (Django's atomic).
    with transaction.atomic(savepoint=savepoint), workspace_scope([workspace_id]):
        while True:
            with connection.cursor() as cursor:
                cursor.execute(_INSERT, [_prep("workspace", workspace_id), scope, key, digest,
                                         _prep("created_at", timezone.now())])
                inserted = cursor.fetchone()
            if inserted is not None:
                break
            stored = (
                IdempotencyRecord.objects.for_workspace(workspace_id).filter(scope=scope, key=key)
                .values_list("request_hash", "status_code", "response").first()
            )
            if stored is not None:  # else purged since the conflict: insert again
                return _replay(stored, digest, key)
        if savepoint:
            status_code, response = compute()
        else:
            with rolled_back_whole():  # the services compute calls need no savepoints
                status_code, response = compute()
        with connection.cursor() as cursor:
            cursor.execute(_STORE, [status_code, _prep("response", response), inserted[0]])
    return status_code, response


@transaction.atomic
def purge_idempotency_records(*, older_than: timedelta = IDEMPOTENCY_TTL) -> int:
    """Delete records older than ``older_than`` (database clock) in every workspace."""
    with rls_bypass():
        cutoff = db_now() - older_than
        deleted, _ = IdempotencyRecord.objects.unscoped().filter(created_at__lt=cutoff).delete()
    return deleted
