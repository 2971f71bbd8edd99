"""allauth adapter: our atomic login-attempt limits (B5) in front of allauth's own, and e-mails that
name the product and link to the public address (accounts/links.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context as allauth_context
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from accounts.links import public_host, public_url
from core import ratelimit

PRODUCT_NAME = "Flowdeck"


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

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        request = allauth_context.request
        # allauth's templates greet with the Site's name and domain ("Hello from 127.0.0.1:8103!"):
        # they get the product's name and the public host instead.
        ctx: dict[str, Any] = {
            "request": request,
            "email": email,
            "current_site": SimpleNamespace(name=PRODUCT_NAME, domain=public_host(request)),
        }
        ctx.update(context)
        # allauth builds its links from the request; an explicit public address replaces that origin.
        origin = request.build_absolute_uri("/").rstrip("/") if request is not None else ""
        target = public_url(request)
        if origin and target != origin:
            for name, value in list(ctx.items()):
                if isinstance(value, str) and value.startswith(origin + "/"):
                    ctx[name] = target + value[len(origin):]
        msg = self.render_mail(template_prefix, email, ctx)
        msg.send()
