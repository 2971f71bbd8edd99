"""Verified API keys, remembered briefly in process so that a warm key costs no SQL (B2).

An entry maps the SHA-256 of a presented secret to what its Principal needs (field values of the
key, its workspace, user or service account, and the effective role). It is trusted for
``API_KEY_CACHE_SECONDS`` and only while its workspace's *generation* is the one it was verified
under. Every change that can take access away (a key revoked, rotated, expired early or deleted; a
role changed; a member removed; a user or service account deactivated or deleted; a workspace
deleted) bumps that generation: at once in this process, and again after the change commits, in
Redis (``flowdeck:auth-generation:<workspace id>``), which every process reads with one GET per
request. So a revocation cuts the very next request off, in every server process. Expiry is checked
on each hit against the stored ``expires_at``.

Ordering is what makes it safe: the generation is read *before* the database is asked, and a change
bumps it only *after* it commits, so a verification that raced a change is stored under a
generation that is already stale. That needs the workspace before the lookup, so the first sight of
a key only records its workspace (keys never move) and the next request verifies properly.

Without Redis (embedded mode, one process) the in-process counter is the generation. When Redis
cannot be reached the cache is not used (every request verifies in the database), logged at most
once a minute.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import Model
from django.db.models.base import ModelState

from .models import ApiKey, ServiceAccount, User, Workspace

logger = logging.getLogger(__name__)

GENERATION_KEY = "flowdeck:auth-generation:{}"
# A Redis that does not answer is not asked again for this long (requests verify in the database).
REDIS_RETRY_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 0.25
WARN_EVERY_SECONDS = 60.0

Generation = tuple[Any, int]  # (Redis counter or None without Redis, in-process counter)


@dataclass
class _Entry:
    workspace_id: Any
    generation: Generation | None  # None: only the workspace is known, verify again
    verified_at: float
    role: str = ""
    key: dict[str, Any] | None = None
    workspace: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    service_account: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verified:
    """A cache hit: fresh model instances (callers may change them freely) and the role."""

    api_key: ApiKey
    workspace: Workspace
    user: User | None
    service_account: ServiceAccount | None
    role: str


@dataclass(frozen=True)
class Lookup:
    """What :func:`lookup` found: a hit, or the generation to store a verification under."""

    hit: Verified | None
    generation: Generation | None
    workspace_id: Any = None


_lock = threading.Lock()
_entries: OrderedDict[str, _Entry] = OrderedDict()
_local_generations: dict[str, int] = {}
_redis_clients: dict[str, redis.Redis] = {}
_redis_down_until: dict[str, float] = {}  # URL -> when to ask it again
_last_warning = 0.0


def enabled() -> bool:
    return settings.API_KEY_CACHE_SECONDS > 0


def clear() -> None:
    with _lock:
        _entries.clear()


# --- Generations ---------------------------------------------------------------------------------


def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _redis_clients.get(url)
    if client is None:
        client = _redis_clients.setdefault(url, redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS,
        ))
    return client


def _warn(message: str) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY_SECONDS:
        _last_warning = now
        logger.warning(message, exc_info=True)


def _fresh_start() -> int:
    # A missing counter (Redis restarted or flushed) starts somewhere random, never where an entry
    # stored before the loss could match it again.
    return secrets.randbits(62)


def generation(workspace_id: Any) -> Generation | None:
    """The workspace's current generation; None when it cannot be known (Redis unreachable)."""
    local = _local_generations.get(str(workspace_id), 0)
    client = _client()
    if client is None:
        return None, local
    url = settings.REDIS_URL
    if time.monotonic() < _redis_down_until.get(url, 0.0):
        return None
    name = GENERATION_KEY.format(workspace_id)
    try:
        value = client.get(name)
        if value is None:
            pipe = client.pipeline(transaction=False)
            pipe.set(name, _fresh_start(), nx=True)
            pipe.get(name)
            value = pipe.execute()[1]
    except redis.RedisError:
        _redis_down_until[url] = time.monotonic() + REDIS_RETRY_SECONDS
        _warn("API-key cache not used: Redis cannot be reached (keys are verified in the database)")
        return None
    return value, local


def _bump_local(workspace_id: str) -> None:
    with _lock:
        _local_generations[workspace_id] = _local_generations.get(workspace_id, 0) + 1


def _publish(workspace_id: str) -> None:
    _bump_local(workspace_id)
    client = _client()
    if client is None:
        return
    name = GENERATION_KEY.format(workspace_id)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.set(name, _fresh_start(), nx=True)
        pipe.incr(name)
        pipe.execute()
    except redis.RedisError:
        # Other processes that still reach Redis keep their entries until API_KEY_CACHE_SECONDS pass.
        _warn("API-key cache: a change of access could not be announced in Redis")


_PENDING = "_flowdeck_auth_bumps"


def bump(workspace_id: Any) -> None:
    """Invalidate every cached key of this workspace: now in this process, and in every process
    once the current transaction commits (at once when there is none)."""
    workspace_id = str(workspace_id)
    _bump_local(workspace_id)
    if not connection.in_atomic_block:
        _publish(workspace_id)
        return
    # One announcement per workspace per transaction: the hooks list is replaced on commit,
    # rollback and savepoint rollback (which also drops the hooks registered inside it).
    hooks = connection.run_on_commit
    pending = getattr(connection, _PENDING, None)
    if pending is None or pending[0] is not hooks:
        pending = (hooks, set())
        setattr(connection, _PENDING, pending)
    if workspace_id in pending[1]:
        return
    pending[1].add(workspace_id)
    transaction.on_commit(lambda: _publish(workspace_id))


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
    assert entry.key is not None and entry.workspace is not None
    key = _rebuild(ApiKey, entry.key)
    workspace = _rebuild(Workspace, entry.workspace)
    user = None if entry.user is None else _rebuild(User, entry.user)
    account = None if entry.service_account is None else _rebuild(ServiceAccount, entry.service_account)
    _KEY_WORKSPACE.set_cached_value(key, workspace)
    _KEY_USER.set_cached_value(key, user)
    _KEY_SERVICE_ACCOUNT.set_cached_value(key, account)
    return Verified(api_key=key, workspace=workspace, user=user, service_account=account, role=entry.role)


def lookup(secret_hash: str) -> Lookup:
    """A fresh entry for this key, or the generation a verification made now must be stored under.

    Reads the workspace's generation (one Redis GET) when the key was seen before."""
    if not enabled():
        return Lookup(hit=None, generation=None)
    with _lock:
        entry = _entries.get(secret_hash)
        if entry is not None:
            _entries.move_to_end(secret_hash)
    if entry is None:
        return Lookup(hit=None, generation=None)
    current = generation(entry.workspace_id)
    fresh = time.monotonic() - entry.verified_at < settings.API_KEY_CACHE_SECONDS
    if current is not None and entry.generation == current and fresh and entry.key is not None:
        return Lookup(hit=_verified(entry), generation=current, workspace_id=entry.workspace_id)
    return Lookup(hit=None, generation=current, workspace_id=entry.workspace_id)


def store(secret_hash: str, key: ApiKey, role: str, generation: Generation | None) -> None:
    """Remember a key just verified in the database, under the generation read before that."""
    if not enabled():
        return
    entry = _Entry(workspace_id=key.workspace_id, generation=generation, verified_at=time.monotonic())
    if generation is not None:
        entry.role = role
        entry.key = _snapshot(key)
        entry.workspace = _snapshot(key.workspace)
        entry.user = _snapshot(key.user)
        entry.service_account = _snapshot(key.service_account)
    with _lock:
        _entries[secret_hash] = entry
        _entries.move_to_end(secret_hash)
        while len(_entries) > settings.API_KEY_CACHE_SIZE:
            _entries.popitem(last=False)


def mark_used(secret_hash: str, at: datetime) -> None:
    """Remember that the key's last use was stamped (so a hit stamps at most once per window)."""
    with _lock:
        entry = _entries.get(secret_hash)
        if entry is not None and entry.key is not None:
            entry.key = {**entry.key, "last_used_at": at}
