"""Account security: "sign out everywhere and revoke my personal API keys".

A password reset leaves personal API keys working (as on GitHub: a reset is often routine, and
breaking every script with it would teach people to avoid resets). A person who suspects a leak
needs one action that cuts everything off at once, which is :func:`sign_out_everywhere`:

* it asks for the current password (a stolen session cookie alone cannot use it, nor lock the owner
  out with it), counted against the same per-account and per-address budget as logging in (B5);
* it ends every session of the person, this browser's included: each session allauth recorded at
  sign-in is deleted from the session store, and the password hash is salted anew (same password),
  so any other session — one made outside allauth, say — fails Django's session-hash check on its
  next request too;
* it revokes every personal key the person owns that still works, in every workspace they belong
  to (service-account keys belong to their workspace and are left alone), invalidating the
  verified-key cache of each workspace so every server process refuses them on the next request;
* it closes the person's open live sockets (browser pages) and any socket opened with those keys
  (C4), and records one audit entry in each of their workspaces plus one line in the server's
  ``flowdeck.audit`` log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import import_module

from allauth.usersessions.adapter import get_adapter as usersessions_adapter
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts import key_cache, selectors
from accounts.models import ApiKey, User, Workspace
from core import ratelimit
from core.errors import InvalidInput, TooManyRequests, Unauthenticated
from core.live.control import close_api_key_sockets, close_session_sockets, close_user_sockets
from core.tenancy import workspace_scope

from .audit import audit_record

audit_logger = logging.getLogger("flowdeck.audit")

AUDIT_ACTION = "account.signed_out_everywhere"


@dataclass(frozen=True)
class WorkspaceRevocation:
    workspace: Workspace
    revoked_api_keys: int


@dataclass(frozen=True)
class SignedOutEverywhere:
    sessions_ended: int
    workspaces: list[WorkspaceRevocation]  # every workspace of the person, keys revoked there or not

    @property
    def revoked_api_keys(self) -> int:
        return sum(w.revoked_api_keys for w in self.workspaces)


def _password_attempt_tickets(user: User, ip_address: str | None) -> list[tuple[str, str]]:
    """Take one ticket from the login-attempt counters (the buckets ``accounts.auth_adapter`` uses
    for logging in), so a stolen session adds no password guesses to what the login form allows."""
    window = settings.LOGIN_ATTEMPT_WINDOW_SECONDS
    buckets = [
        ("login-ip", ip_address or "unknown", settings.LOGIN_ATTEMPT_LIMIT_PER_IP),
        ("login-account", user.email.strip().lower(), settings.LOGIN_ATTEMPT_LIMIT_PER_ACCOUNT),
    ]
    taken = []
    for scope, key, limit in buckets:
        allowed, retry_after = ratelimit.hit(scope, key, limit=limit, window_seconds=window)
        taken.append((scope, key))
        if not allowed:
            raise TooManyRequests(
                "Too many password attempts for this account or from your address; wait and try again.",
                retry_after=retry_after,
            )
    return taken


def _give_back(tickets: list[tuple[str, str]]) -> None:
    # A right password gives its ticket back, as a successful login does.
    window = settings.LOGIN_ATTEMPT_WINDOW_SECONDS
    for scope, key in tickets:
        try:
            cache.decr(ratelimit.window_key(scope, key, window))
        except ValueError:
            pass


def check_current_password(user: User, password: str, ip_address: str | None) -> None:
    """Refuse unless ``password`` is the person's current password (rate-limited like logging in)."""
    tickets = _password_attempt_tickets(user, ip_address)
    if not password or not user.check_password(password):
        raise InvalidInput(
            "That is not your current password.", code="wrong_password",
            details={"password": ["Incorrect password."]},
        )
    _give_back(tickets)


def _is_signed_in(session_key: str, user: User) -> bool:
    """Whether this stored session still signs ``user`` in (not expired, not someone else's)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return str(store.get(SESSION_KEY, "")) == str(user.pk)


def _end_sessions(user: User) -> int:
    """End every session allauth recorded for the person; how many were still signed in."""
    sessions = list(UserSession.objects.filter(user_id=user.pk))
    live = sum(1 for s in sessions if _is_signed_in(s.session_key, user))
    for session in sessions:
        close_session_sockets(session_key=session.session_key, reason="signed_out_everywhere")  # after commit
    usersessions_adapter().end_sessions(sessions)
    return live


@transaction.atomic
def sign_out_everywhere(*, user: User, password: str, ip_address: str | None = None) -> SignedOutEverywhere:
    """End all of ``user``'s sessions and revoke all of their personal API keys, once their current
    password is confirmed. The adapter signs the calling request's own session out as well."""
    if not user.is_authenticated or not user.is_active:
        raise Unauthenticated("Sign in to do this.", code="not_authenticated")
    check_current_password(user, password, ip_address)

    sessions_ended = _end_sessions(user)
    # The same password salted anew: the session hash every session stores stops matching, so a
    # session allauth did not record (if any) is signed out on its next request too.
    user.set_password(password)
    user.save(update_fields=["password"])

    workspaces = list(selectors.workspace_list_for_user(user))
    now = timezone.now()
    revoked: dict[object, list[ApiKey]] = {w.pk: [] for w in workspaces}
    with workspace_scope([w.pk for w in workspaces]):
        keys = list(selectors.active_personal_api_keys(user, workspaces, now=now).select_for_update())
        for key in keys:
            revoked[key.workspace_id].append(key)
        if keys:
            ApiKey.objects.unscoped().filter(pk__in=[k.pk for k in keys]).update(revoked_at=now)
            close_api_key_sockets(key_ids=[k.pk for k in keys], reason="api_key_revoked")  # after commit
        for workspace in workspaces:
            key_cache.bump(workspace.pk)  # a bulk update sends no signal: refused at once everywhere
            audit_record(
                workspace=workspace, action=AUDIT_ACTION, target=user, actor_user=user, ip_address=ip_address,
                data={
                    "sessions_ended": sessions_ended,
                    "revoked_api_keys": len(revoked[workspace.pk]),
                    "prefixes": sorted(k.lookup_prefix for k in revoked[workspace.pk]),
                },
            )
    close_user_sockets(user_id=user.pk, reason="signed_out_everywhere")  # every workspace's pages

    result = SignedOutEverywhere(
        sessions_ended=sessions_ended,
        workspaces=[WorkspaceRevocation(workspace=w, revoked_api_keys=len(revoked[w.pk])) for w in workspaces],
    )
    record = {
        "action": AUDIT_ACTION, "user_id": str(user.pk), "email": user.email, "ip_address": ip_address,
        "sessions_ended": sessions_ended, "revoked_api_keys": result.revoked_api_keys,
        "workspaces": [str(w.pk) for w in workspaces],
    }
    transaction.on_commit(lambda: audit_logger.info(
        "%s %s from %s: %d sessions ended, %d personal API keys revoked", AUDIT_ACTION, user.email, ip_address,
        sessions_ended, result.revoked_api_keys, extra={"audit": record},
    ))
    return result
