"""Idempotency keys for agent POSTs (D4, Stripe's model).

The first call with a key runs ``compute`` and stores its (status, response) in the same
transaction as its effects; a replay with the same key and body returns the stored response and
does nothing; the same key with another body is refused with 422. Concurrent identical calls are
serialised on the unique index (workspace, scope, key): the first inserts the record, the others
block on that insert until it commits, then read and return its response — so five concurrent
identical reports apply once. If ``compute`` raises, the record rolls back with the effects and a
retry computes afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction

from core.errors import InvalidInput, ServiceError
from core.tenancy import rls_bypass, workspace_scope
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


def _replay(record: IdempotencyRecord, digest: str, key: str) -> tuple[int, dict]:
    if record.request_hash != digest:
        raise IdempotencyKeyReused(
            f"The idempotency key '{key}' was already used with a different request body; use a new key "
            "for a new request.",
            details={"idempotency_key": ["Reused with a different body."]},
        )
    return record.status_code, record.response


@transaction.atomic
def idempotent_call(
    *, workspace: Any, scope: str, key: str, body: dict, compute: Callable[[], tuple[int, dict]]
) -> tuple[int, dict]:
    """Run ``compute`` once per (workspace, scope, key); replays return what the first call returned."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"An idempotency key is 1–{MAX_KEY_LENGTH} characters.",
            code="invalid_idempotency_key",
            details={"idempotency_key": ["Invalid."]},
        )
    workspace_id = getattr(workspace, "pk", workspace)
    digest = request_hash(body)
    with workspace_scope([workspace_id]):
        records = IdempotencyRecord.objects.for_workspace(workspace_id).filter(scope=scope, key=key)
        existing = records.first()
        if existing is not None:
            return _replay(existing, digest, key)
        try:
            with transaction.atomic():
                # Blocks while a concurrent call holds the same key uncommitted.
                record = IdempotencyRecord.objects.unscoped().create(
                    workspace_id=workspace_id, scope=scope, key=key, request_hash=digest, status_code=0, response={}
                )
        except IntegrityError:
            return _replay(records.get(), digest, key)
        status_code, response = compute()
        record.status_code, record.response = status_code, response
        record.save(update_fields=["status_code", "response"])
    return status_code, response


@transaction.atomic
def purge_idempotency_records(*, older_than: timedelta = IDEMPOTENCY_TTL) -> int:
    """Delete records older than ``older_than`` (database clock) in every workspace."""
    with rls_bypass():
        cutoff = db_now() - older_than
        deleted, _ = IdempotencyRecord.objects.unscoped().filter(created_at__lt=cutoff).delete()
    return deleted
