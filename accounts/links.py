"""The address that links in e-mails point to.

``FLOWDECK_PUBLIC_URL`` when it is set (behind a proxy, or when mail is sent for another host);
otherwise the address the request that caused the e-mail came to, which is the one the person's
browser just reached (whatever port the server runs on). Without either, the local default.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

LOCAL_DEFAULT = "http://127.0.0.1:8000"


def public_url(request: HttpRequest | None = None) -> str:
    """Scheme, host and port of the web app, without a trailing slash."""
    if settings.PUBLIC_URL:
        return str(settings.PUBLIC_URL).rstrip("/")
    if request is not None:
        # get_host() only answers with a host in ALLOWED_HOSTS, so a forged Host header cannot
        # put another site's address into a mail.
        return request.build_absolute_uri("/").rstrip("/")
    return LOCAL_DEFAULT


def public_host(request: HttpRequest | None = None) -> str:
    """The host (and port) of :func:`public_url`, as mails name the site."""
    return urlsplit(public_url(request)).netloc
