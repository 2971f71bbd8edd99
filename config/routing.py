"""Websocket routes (issue 5; docs/live-updates.md).

The browser socket is authenticated by the session cookie, so its Origin is checked before the
handshake (E1; cross-site pages cannot ride the cookie): its host against ALLOWED_HOSTS, and the
whole origin (scheme, host, port) against the address served (core/live/origin.py). The agent socket
is authenticated by its ``Authorization`` header, which a browser cannot set, so it needs no
Origin (agents send none)."""

from __future__ import annotations

from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

import core.live.signals  # noqa: F401 - connects the logout receiver in every ASGI process
from core.live.origin import SameOriginValidator
from orchestration.live.agent import AgentConsumer
from orchestration.live.browser import BrowserConsumer

websocket_urlpatterns: list = [
    path("ws/v1/workspaces/<slug:slug>/events/",
         AllowedHostsOriginValidator(SameOriginValidator(BrowserConsumer.as_asgi()))),
    path("ws/v1/workspaces/<slug:slug>/agents/<str:agent_id>/", AgentConsumer.as_asgi()),
]
