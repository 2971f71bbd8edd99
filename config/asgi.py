"""ASGI entry point: HTTP through Django, websockets through Channels.

Websockets get the session user (``AuthMiddlewareStack``); the Origin check (E1) applies to the
cookie-authenticated browser socket, per route in :mod:`config.routing`. Importing this module (as
uvicorn does) also starts the process's web-tier beat."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from orchestration.services.web_tier import start_web_tier_beat  # noqa: E402

# Every server process stamps "the web tier is serving" every second, so the reaper (in Celery)
# never reads a web outage as dead agents (orchestration/services/web_tier.py).
start_web_tier_beat()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
