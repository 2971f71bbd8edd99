"""allauth adapter: our atomic login-attempt limits (B5) in front of allauth's own."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from core import ratelimit


class AccountAdapter(DefaultAccountAdapter):
    def _attempt_keys(self, request: HttpRequest, credentials: dict[str, Any]) -> list[tuple[str, str, int]]:
        email = str(credentials.get("email") or credentials.get("username") or "").strip().lower()
        keys = [("login-ip", ratelimit.client_ip(request) or "unknown", settings.LOGIN_ATTEMPT_LIMIT_PER_IP)]
        if email:
            keys.append(("login-account", email, settings.LOGIN_ATTEMPT_LIMIT_PER_ACCOUNT))
        return keys

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        # Each attempt takes a numbered ticket from an atomic counter before the password is
        # checked, so no burst of concurrent guesses can exceed the limit.
        window = settings.LOGIN_ATTEMPT_WINDOW_SECONDS
        self._attempt_tickets = []
        for scope, key, limit in self._attempt_keys(request, credentials):
            allowed, _ = ratelimit.hit(scope, key, limit=limit, window_seconds=window)
            self._attempt_tickets.append((scope, key))
            if not allowed:
                raise self.validation_error("too_many_login_attempts")
        super().pre_authenticate(request, **credentials)

    def authenticate(self, request: HttpRequest, **credentials: Any):
        user = super().authenticate(request, **credentials)
        if user is not None:
            # A successful login gives its ticket back; failures keep theirs until the window ends.
            window = settings.LOGIN_ATTEMPT_WINDOW_SECONDS
            for scope, key in getattr(self, "_attempt_tickets", []):
                cache_key = ratelimit.window_key(scope, key, window)
                try:
                    cache.decr(cache_key)
                except ValueError:
                    pass
        return user
