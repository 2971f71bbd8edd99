"""Security headers no view should have to remember (docs/operations.md, "Production security
checklist"):

- ``Content-Security-Policy`` on every HTML page: scripts only from this origin, never inline, so
  markup that slipped into a page cannot run. The web app's shell (frontend/templates) has no
  inline script; django-vite emits ``<script type="module" src>`` and ``<link>`` tags only (its
  inline React-refresh preamble exists in Vite's dev mode, where no policy is sent: the dev
  server is another origin).
- ``Permissions-Policy`` on every HTML page: no camera, microphone, geolocation, payment … for
  Flowdeck or anything it might embed.
- ``Cache-Control: no-store`` on every answer that can carry a credential: a new API key's secret
  (REST key creation and rotation, the GraphQL ``createApiKey`` / ``createServiceAccountKey``
  mutations the web app's key and connect-an-agent pages call), a TOTP secret or recovery codes
  (allauth). No browser or proxy cache may keep a copy.

HSTS is Django's ``SecurityMiddleware`` (``SECURE_HSTS_SECONDS``, production only: config/settings.py).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase
from django.template.loader import get_template

PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in (
    "accelerometer", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer", "microphone",
    "payment", "usb",
))

# The web app's policy. Styles: the built app's CSS files only; React (and React Flow) set element
# styles through the DOM (CSSOM), which a policy does not govern, so no 'unsafe-inline' is needed.
# img-src data: for the shell's inline SVG favicon.
_APP_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'{sockets}; worker-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_PATH = "/api/docs/"
DOCS_TEMPLATE = "drf_spectacular/swagger_ui.html"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Every answer under these paths: GraphQL (mutations that return secrets; a channel's signing
# secret in queries) and allauth's headless API (TOTP secrets, recovery codes).
_NO_STORE_ALWAYS = ("/graphql", "/_allauth/")
# Every answer to a write under the REST API (key creation and rotation among them).
_NO_STORE_WRITES = "/api/"


def docs_policy() -> str:
    """Swagger UI's page (/api/docs/, drf-spectacular's split view: its start-up script is a file,
    not inline). Its template carries one inline <style> block, static text: that block, by its
    hash, is the only inline style allowed, and on this page only."""
    source = get_template(DOCS_TEMPLATE).template.source  # type: ignore[attr-defined]
    hashes = [base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
              for block in re.findall(r"<style>(.*?)</style>", source, flags=re.DOTALL)]
    allowed = "".join(f" 'sha256-{digest}'" for digest in hashes)
    return _APP_POLICY.replace("style-src 'self'", f"style-src 'self'{allowed}")


def content_security_policy(request: HttpRequest, docs: str) -> str:
    """The policy for an HTML page answering ``request`` (``docs``: :func:`docs_policy`). The
    browser socket is named explicitly: older browsers do not count ws(s) of this origin as 'self'."""
    try:
        host = request.get_host()
    except DisallowedHost:  # the 400 answer itself is a page too
        sockets = ""
    else:
        sockets = f" {'wss' if request.is_secure() else 'ws'}://{host}"
    policy = docs if request.path_info == DOCS_PATH else _APP_POLICY
    return policy.format(sockets=sockets)


def carries_credentials(request: HttpRequest) -> bool:
    path = request.path_info
    if path.startswith(_NO_STORE_ALWAYS):
        return True
    return path.startswith(_NO_STORE_WRITES) and request.method not in _SAFE_METHODS


class SecurityHeadersMiddleware:
    """Adds the headers above to each response (placed right after Django's SecurityMiddleware, so
    that every answer, the guards' early ones included, passes through it)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response
        # Vite's dev mode serves scripts from its own server and inlines a preamble: no policy there.
        self.send_policy = not settings.DJANGO_VITE["default"]["dev_mode"]
        self.docs_policy = docs_policy()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if carries_credentials(request):
            response["Cache-Control"] = "no-store"
        if response.get("Content-Type", "").startswith("text/html"):
            if self.send_policy and "Content-Security-Policy" not in response:
                response["Content-Security-Policy"] = content_security_policy(request, self.docs_policy)
            if "Permissions-Policy" not in response:
                response["Permissions-Policy"] = PERMISSIONS_POLICY
        return response
