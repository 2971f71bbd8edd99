"""ASGI entry point: HTTP through Django's WSGI handler on a bounded pool of reused threads,
websockets through Channels on the event loop.

Django's own ASGI handler runs each synchronous request on a thread of its own (a new executor per
request), which cost a seventh of the server's CPU and let every request in at once to queue for a
database connection (docs/performance.md, "Python CPU" and "Wall time"). Here the event loop only
parses HTTP and carries bytes; ``settings.FLOWDECK_WEB_THREADS`` threads run the requests, each
through the middleware as under any WSGI server (a shorter chain for API requests with a key and no
cookie: :mod:`config.key_lane`), at most ``FLOWDECK_WEB_ACTIVE`` at once (one place kept for
requests with a key), and further requests wait their turn in order.
An ordinary response comes back from its thread whole, in one hand-over (:mod:`config.wsgi_bridge`);
streaming responses are sent chunk by chunk as they are produced. A body over the size limit is
refused on the event loop before any of it is read (:mod:`config.body_limit`).

Websockets get the session user (``AuthMiddlewareStack``); the Origin check (E1) applies to the
cookie-authenticated browser socket, per route in :mod:`config.routing`. Importing this module (as
uvicorn does) also starts the process's web-tier beat."""

import asyncio
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.key_lane import FlowdeckWSGIHandler, is_key_request  # noqa: E402

django_wsgi_app = FlowdeckWSGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config.body_limit import BodySizeLimit  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from config.wsgi_bridge import ThreadedWSGI  # noqa: E402
from core.events import bind_server_loop  # noqa: E402
from orchestration.services.web_tier import start_web_tier_beat  # noqa: E402

# The pool's threads are named WSGI_0 … WSGI_{n-1}; they start on demand and live as long as the
# process. FLOWDECK_WEB_ACTIVE of them run requests at once, one place of which is kept for requests
# that carry a key (agents among them), so browsers' requests can never hold every place.
http_application = ThreadedWSGI(django_wsgi_app, workers=settings.FLOWDECK_WEB_THREADS,
                                active=settings.FLOWDECK_WEB_ACTIVE, reserve_for=is_key_request)
_loop_bound = False


async def http(scope: Any, receive: Any, send: Any) -> None:
    global _loop_bound
    if not _loop_bound:
        # Embedded mode: events published by the request threads go to the in-memory layer on this
        # loop from the first request on, not through a new thread and event loop each
        # (core/events.py; the live hub binds it too, but only once a socket connects).
        bind_server_loop(asyncio.get_running_loop())
        _loop_bound = True
    await http_application(scope, receive, send)


# Every server process stamps "the web tier is serving" every second, so the reaper (in Celery)
# never reads a web outage as dead agents (orchestration/services/web_tier.py).
start_web_tier_beat()

application = ProtocolTypeRouter(
    {
        # Bodies over MAX_REQUEST_BODY_BYTES are refused here, before a request thread or Django
        # reads a byte of them (config/body_limit.py).
        "http": BodySizeLimit(http, limit=settings.MAX_REQUEST_BODY_BYTES),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
