"""The browser socket's Origin check: the page that opens the socket must come from the very origin
the socket is served on (scheme, host and port), or from ``FLOWDECK_PUBLIC_URL`` /
``CSRF_TRUSTED_ORIGINS``. Channels' ``AllowedHostsOriginValidator`` compares the host only, so a
page on another port of the same host (or plain http against an https site) could ride the
session cookie."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def allowed_origins(scope: dict[str, Any]) -> set[str]:
    """The origins a browser socket may be opened from, for this connection."""
    allowed = {origin.rstrip("/").lower() for origin in settings.CSRF_TRUSTED_ORIGINS}
    if settings.PUBLIC_URL:
        allowed.add(str(settings.PUBLIC_URL).rstrip("/").lower())
    host = _header(scope, b"host")
    if host:
        # wss is served to https pages, ws to http ones (behind a TLS proxy, --proxy-headers sets it)
        scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
        allowed.add(f"{scheme}://{host}".lower())
    return allowed


class SameOriginValidator:
    """Refuses the handshake (403) unless the Origin is one of :func:`allowed_origins`."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = (_header(scope, b"origin") or "").rstrip("/").lower()
        if not origin or origin not in allowed_origins(scope):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
