"""WSGI entry point (``settings.WSGI_APPLICATION``): the same handler the ASGI server runs on its
request threads (config/asgi.py)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.key_lane import FlowdeckWSGIHandler  # noqa: E402

application = FlowdeckWSGIHandler()
