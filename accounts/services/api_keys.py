"""API keys (B1–B3): minted, shown once, authenticated, rotated and revoked here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import key_cache, keys
from accounts.authz import NotFound, Principal, authorize, can_grant_role, permission_denied, role_at_most
from accounts.models import ApiKey, Membership, ServiceAccount
from core.errors import InvalidInput, Unauthenticated
from core.live.control import close_api_key_sockets
from core.tenancy import rls_bypass, workspace_scope

from .audit import audit_record
from .members import validate_human_role

MAX_ROTATION_GRACE = timedelta(days=7)


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # shown once, never stored


def _validate(name: str, expires_at: datetime | None) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("An API key needs a name of 1–100 characters.", details={"name": ["Invalid."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(
            "The expiry must be in the future.", code="invalid_expiry", details={"expires_at": ["In the past."]}
        )
    return name


def _mint(*, actor: Principal, kind: str, name: str, expires_at, role, user=None, service_account=None) -> CreatedKey:
    generated = keys.generate(kind)
    key = ApiKey.objects.unscoped().create(
        workspace=actor.workspace, kind=kind, user=user, service_account=service_account, name=name,
        lookup_prefix=generated.lookup_prefix, secret_hash=generated.secret_hash, role=role,
        created_by=actor.user, expires_at=expires_at,
    )
    return CreatedKey(key=key, secret=generated.secret)


@transaction.atomic
def api_key_create_for_user(
    *, actor: Principal, name: str, expires_at: datetime | None = None, role: str | None = None
) -> CreatedKey:
    """A personal key for the acting user, optionally narrowed to a lower role."""
    authorize(actor, "api_key:create_own", actor.workspace)
    if actor.user is None or actor.api_key is not None and actor.api_key.kind != ApiKey.Kind.USER:
        raise permission_denied(
            "api_key:create_own", actor.role, "Personal API keys are created by a signed-in person, not with a key."
        )
    name = _validate(name, expires_at)
    if role is not None:
        validate_human_role(role)
    if role is not None and not can_grant_role(actor.role, role):
        raise InvalidInput("A key's role cannot exceed yours.", code="invalid_role", details={"role": ["Too high."]})
    created = _mint(actor=actor, kind=ApiKey.Kind.USER, name=name, expires_at=expires_at, role=role, user=actor.user)
    audit_record(workspace=actor.workspace, action="api_key.created", target=created.key, actor=actor,
                 data={"kind": "user", "prefix": created.key.lookup_prefix})
    return created


@transaction.atomic
def api_key_create_for_service_account(
    *, actor: Principal, account: ServiceAccount, name: str, expires_at: datetime | None = None
) -> CreatedKey:
    authorize(actor, "service_account:manage_keys", account)
    if not account.is_active:
        raise InvalidInput("This service account was deleted.", code="service_account_inactive")
    name = _validate(name, expires_at)
    created = _mint(actor=actor, kind=ApiKey.Kind.SERVICE_ACCOUNT, name=name, expires_at=expires_at, role=None,
                    service_account=account)
    audit_record(workspace=actor.workspace, action="api_key.created", target=created.key, actor=actor,
                 data={"kind": "service_account", "service_account": account.name, "prefix": created.key.lookup_prefix})
    return created


def api_key_get(*, actor: Principal, key_id) -> ApiKey:
    key = (
        ApiKey.objects.for_workspace(actor.workspace)
        .select_related("service_account", "user")
        .filter(pk=key_id)
        .first()
    )
    if key is None:
        raise NotFound()
    if key.user_id == getattr(actor.user, "pk", None) and key.kind == ApiKey.Kind.USER:
        return key
    if key.service_account is not None:
        authorize(actor, "service_account:manage_keys", key.service_account)
        return key
    authorize(actor, "api_key:read_all", actor.workspace)
    return key


def _authorize_manage(actor: Principal, key: ApiKey) -> None:
    if key.kind == ApiKey.Kind.USER and key.user_id == getattr(actor.user, "pk", None):
        return
    if key.service_account is not None:
        authorize(actor, "service_account:manage_keys", key.service_account)
        return
    authorize(actor, "api_key:revoke_any", actor.workspace)


@transaction.atomic
def api_key_revoke(*, actor: Principal, key: ApiKey) -> ApiKey:
    _authorize_manage(actor, key)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        close_api_key_sockets(key_ids=[key.pk])  # C4, after commit
        audit_record(workspace=actor.workspace, action="api_key.revoked", target=key, actor=actor,
                     data={"prefix": key.lookup_prefix})
    return key


@transaction.atomic
def api_key_rotate(*, actor: Principal, key: ApiKey, grace_seconds: int = 0) -> CreatedKey:
    """Issue a replacement; the old key keeps working for ``grace_seconds`` (at most 7 days)."""
    _authorize_manage(actor, key)
    if not key.is_active():
        raise InvalidInput("Only an active key can be rotated.", code="api_key_inactive")
    grace = timedelta(seconds=grace_seconds)
    if grace < timedelta(0) or grace > MAX_ROTATION_GRACE:
        raise InvalidInput(
            "The grace period is between 0 seconds and 7 days.", details={"grace_seconds": ["Out of range."]}
        )
    created = _mint(
        actor=actor, kind=key.kind, name=key.name, expires_at=key.expires_at, role=key.role,
        user=key.user, service_account=key.service_account,
    )
    now = timezone.now()
    key.rotated_to = created.key
    if grace:
        key.expires_at = min(key.expires_at or now + grace, now + grace)
    else:
        key.revoked_at = now
        close_api_key_sockets(key_ids=[key.pk])  # C4 (with a grace period, sockets re-check at expiry)
    key.save(update_fields=["rotated_to", "expires_at", "revoked_at"])
    audit_record(workspace=actor.workspace, action="api_key.rotated", target=key, actor=actor,
                 data={"new_prefix": created.key.lookup_prefix, "grace_seconds": grace_seconds})
    return created


def api_key_authenticate(secret: str, *, ip_address: str | None = None, defer_confirmation: bool = False) -> Principal:
    """The principal a presented key acts as, or :class:`Unauthenticated` with a precise code.

    A malformed key is rejected before any query; the stored hash is compared in constant time. A
    key verified moments ago comes from :mod:`accounts.key_cache`, confirmed with one small query
    that reads its workspace's generation. With ``defer_confirmation`` that query is left to the
    caller, who must pass the principal to :func:`api_key_confirm` before acting on it (the
    workspace guard reads the generation in a statement it makes anyway)."""
    parsed = keys.parse(secret)
    if parsed is None:
        raise Unauthenticated(
            "That is not a valid Flowdeck API key (check for a copy-paste error).", code="api_key_malformed"
        )
    candidate = key_cache.lookup(parsed.secret_hash)
    if candidate is not None:
        if defer_confirmation:
            return _unconfirmed(candidate, secret, ip_address)
        if candidate.confirm(key_cache.generation(candidate.workspace_id)):
            principal = _cached_principal(candidate, ip_address)
            _touch_cached(candidate, principal)
            return principal
    return _verify(parsed, ip_address)


def api_key_from_cache(secret: str, *, ip_address: str | None = None) -> Principal | None:
    """The principal of a key verified moments ago, as :func:`api_key_authenticate` gives it with
    ``defer_confirmation`` (to be confirmed with :func:`api_key_confirm`); None when the key is not
    in the cache, or not a key at all, without touching the database."""
    parsed = keys.parse(secret)
    candidate = None if parsed is None else key_cache.lookup(parsed.secret_hash)
    return None if candidate is None else _unconfirmed(candidate, secret, ip_address)


def _unconfirmed(candidate: key_cache.Candidate, secret: str, ip_address: str | None) -> Principal:
    return replace(_cached_principal(candidate, ip_address),
                   unconfirmed=UnconfirmedKey(candidate=candidate, secret=secret))


@dataclass(frozen=True)
class UnconfirmedKey:
    """Carried by a cached principal whose workspace generation has not been read yet."""

    candidate: key_cache.Candidate
    secret: str


def api_key_confirm(principal: Principal, current_generation: int | None) -> Principal:
    """A principal from :func:`api_key_authenticate` with ``defer_confirmation``, checked against
    its workspace's current generation: the same principal, confirmed, when its entry is still
    valid; else the key verified anew in the database (or :class:`Unauthenticated`)."""
    pending = principal.unconfirmed
    if pending is None:
        return principal
    if pending.candidate.confirm(current_generation):
        _touch_cached(pending.candidate, principal)
        return replace(principal, unconfirmed=None)
    parsed = keys.parse(pending.secret)
    assert parsed is not None  # it parsed when the principal was made
    return _verify(parsed, principal.ip_address)


def _cached_principal(candidate: key_cache.Candidate, ip_address: str | None) -> Principal:
    verified = candidate.verified()
    if verified.api_key.expires_at is not None and verified.api_key.expires_at <= timezone.now():
        raise Unauthenticated("This API key has expired; create a new one.", code="api_key_expired")
    return Principal(
        workspace=verified.workspace, role=verified.role, user=verified.user,
        service_account=verified.service_account, api_key=verified.api_key, ip_address=ip_address,
    )


def _touch_cached(candidate: key_cache.Candidate, principal: Principal) -> None:
    key, now = principal.api_key, timezone.now()
    assert key is not None
    if _touch_due(key, now):
        with workspace_scope([principal.workspace.pk]):
            _touch(key, now)
        _mark_used_on_commit(candidate.secret_hash, now)


def _verify(parsed: keys.ParsedKey, ip_address: str | None) -> Principal:
    now = timezone.now()
    with rls_bypass():
        key = (
            ApiKey.objects.unscoped()
            .select_related("workspace", "user", "service_account")
            # Read with the key, in one statement: what the cache stores the verification under.
            .annotate(auth_generation=key_cache.generation_of("workspace_id"))
            .filter(lookup_prefix=parsed.lookup_prefix)
            .first()
        )
        if key is None or not keys.matches(key.secret_hash, parsed):
            raise Unauthenticated("This API key is not recognised.", code="api_key_invalid")
        if key.revoked_at is not None:
            raise Unauthenticated("This API key was revoked.", code="api_key_revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthenticated("This API key has expired; create a new one.", code="api_key_expired")
        role = _effective_role(key)
        touched = _touch_due(key, now)
        if touched:
            _touch(key, now)
    generation = key.__dict__.pop("auth_generation")
    key_cache.store(parsed.secret_hash, key, role, generation)
    if touched:
        key.last_used_at = now
        _mark_used_on_commit(parsed.secret_hash, now)
    return Principal(
        workspace=key.workspace, role=role, user=key.user, service_account=key.service_account, api_key=key,
        ip_address=ip_address,
    )


def _effective_role(key: ApiKey) -> str:
    if key.kind == ApiKey.Kind.SERVICE_ACCOUNT:
        account = key.service_account
        if account is None or not account.is_active:
            raise Unauthenticated("This API key's service account was deleted.", code="api_key_revoked")
        return account.role
    user = key.user
    membership = Membership.objects.filter(workspace_id=key.workspace_id, user=user).only("role").first()
    if user is None or not user.is_active or membership is None:
        raise Unauthenticated("This API key's owner is no longer a member of the workspace.", code="api_key_revoked")
    # Never above the owner's current role, even if they were demoted after minting it.
    return role_at_most(key.role or membership.role, membership.role)


def _touch_due(key: ApiKey, now: datetime) -> bool:
    threshold = now - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    return key.last_used_at is None or key.last_used_at < threshold


def _mark_used_on_commit(secret_hash: str, at: datetime) -> None:
    """Tell the key cache the stamp is written once it is: a request that rolls back (one the
    agents' lane hands to the DRF view, a failed one) leaves the cache saying the stamp is due, so
    the next request writes it instead of the window passing without one."""
    transaction.on_commit(partial(key_cache.mark_used, secret_hash, at))


def _touch(key: ApiKey, now: datetime) -> None:
    """Record use at most once per resolution window (B2): a cheap conditional UPDATE, and none at
    all when it was recorded recently (see :func:`_touch_due`)."""
    threshold = now - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    ApiKey.objects.unscoped().filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=threshold)
    ).update(last_used_at=now)
