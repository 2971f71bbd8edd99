"""The agents' endpoints (and creating a run) served without DRF's dispatch when the request is
the plain case.

On a flow-run heartbeat, DRF's dispatch and the guard's hooks around the same work (its request
wrapper, content negotiation, the authentication loop, permissions, rendering) cost 0.26 ms of the
request's 1.27 ms of CPU (docs/performance.md, "Ninth round"). The agents send these POSTs many
times a second, always the same way: a JSON object, a key that was used a moment ago, nothing to
negotiate. :func:`lean` serves such a request by calling the DRF view's own handler (``post``) with
the principal the guard makes, checked by the guard's own functions (``accounts.api.guard``), in
the request's transaction, and renders the reply with DRF's JSON renderer and DRF's ``Allow``
header, so the answer is the DRF view's to the byte.

Anything else goes to the DRF view as before: another method, a query string, another content
type or ``Accept``, a cookie, a key not in the cache, a body that is not a JSON object. So does any refusal
raised on the way (a bad key, another workspace, a validation error, a missing run…): the lane's
transaction is rolled back, nothing of it stays, and the DRF view answers the request from the start
with its own error. Only what no view handles is left to go up as from the DRF view (an unreachable
database: the middleware's 503). tests/orchestration/api/test_agent_lane.py sends the same requests
both ways and compares the answers. ``FLOWDECK_AGENT_LANE=false`` sends every request to the DRF
views.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from accounts.api.authentication import user_of
from accounts.api.guard import WorkspaceAPIView, admit, scope_to_key
from accounts.authz import NotFound, PermissionDenied
from accounts.services.api_keys import api_key_from_cache
from core import ratelimit, tenancy
from core.errors import ServiceError

_JSON = "application/json"
# What a refusal on the way raises: the DRF view then answers it in its own words.
# (Those core.errors.exception_handler answers, and a body that is not JSON.)
_REFUSALS = (ServiceError, NotFound, PermissionDenied, Http404, DjangoValidationError, APIException, ValueError)
_RENDERER = JSONRenderer()


class _Declined(Exception):
    """Not the plain case after all: the DRF view answers."""


class LeanRequest:
    """What the agents' handlers read from a request: the parsed body and the WSGI environ."""

    __slots__ = ("META", "data")

    def __init__(self, request: HttpRequest, data: dict[str, Any]) -> None:
        self.META = request.META
        self.data = data


def _plain(request: HttpRequest) -> str | None:
    """The API key of a request this lane takes, else None. A request with cookies (a browser's,
    whose session the middleware around the view may still look at) goes to the DRF view."""
    meta = request.META
    if (request.method != "POST" or meta.get("QUERY_STRING") or meta.get("CONTENT_TYPE") != _JSON
            or meta.get("HTTP_ACCEPT", "*/*") not in ("*/*", _JSON) or meta.get("HTTP_COOKIE")):
        return None
    scheme, _, secret = meta.get("HTTP_AUTHORIZATION", "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # as DRF's strict JSON parser refuses NaN and Infinity


def _serve(view_class: type[WorkspaceAPIView], allow: str, request: HttpRequest, secret: str,
           kwargs: dict[str, Any]) -> HttpResponse:
    try:
        # UTF-8 only, as DRF's parser reads it (json.loads would also take UTF-16 and UTF-32 bytes).
        data = json.loads(request.body.decode("utf-8"), parse_constant=_no_constants)
    except ValueError:
        raise _Declined from None
    if type(data) is not dict:
        raise _Declined
    # Only a key verified a moment ago: a bad or unknown key is checked once, by the DRF view (which
    # also counts a failure against the address).
    principal = api_key_from_cache(secret, ip_address=ratelimit.client_ip(request))
    if principal is None:
        raise _Declined
    if principal.workspace.slug != kwargs["workspace_slug"]:
        raise _Declined  # the DRF view says 404, as for any key on another workspace's URL
    token, principal = scope_to_key(principal, custom_plans=False)
    admit(principal, view_class.scope_map, "POST", custom_plans=False)
    # As DRF's authentication sets them on the request, for whatever reads them after the view.
    request.user = user_of(principal)
    request.auth = principal  # type: ignore[attr-defined]
    view = view_class()
    view.principal, view.workspace = principal, principal.workspace
    view.kwargs = kwargs
    reply = view.post(LeanRequest(request, data), **kwargs)
    if not isinstance(reply, Response) or reply.exception:
        raise _Declined
    tenancy.restore_unless_request_ends(token)  # as the guard's finalize_response
    response = HttpResponse(_RENDERER.render(reply.data, _JSON, {}), status=reply.status_code, content_type=_JSON)
    for name, value in reply.items():
        if name.lower() != "content-type":
            response[name] = value
    response["Allow"] = allow
    return response


def lean(view_class: type[WorkspaceAPIView]) -> Callable[..., HttpResponse]:
    """The URL's view for an agents' endpoint: this lane for the plain case, else ``view_class``.
    It keeps ``cls`` and ``initkwargs`` as DRF's ``as_view()`` does, so the OpenAPI schema still
    reads ``view_class``."""
    drf_view = view_class.as_view()
    probe = view_class()
    probe.setup(HttpRequest())  # as as_view() does: a view with GET also answers HEAD
    allow = ", ".join(probe.allowed_methods)  # DRF's Allow header for this view

    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        secret = _plain(request) if settings.FLOWDECK_AGENT_LANE else None
        if secret is not None:
            try:
                with transaction.atomic():  # the request's transaction, as ATOMIC_REQUESTS makes it
                    return _serve(view_class, allow, request, secret, kwargs)
            except (_Declined, *_REFUSALS):
                pass  # rolled back: the DRF view answers from the start
        with transaction.atomic():  # what ATOMIC_REQUESTS gives the DRF view
            return drf_view(request, **kwargs)

    view.cls = view_class  # type: ignore[attr-defined]
    view.initkwargs = {}  # type: ignore[attr-defined]
    view.__doc__, view.__name__ = view_class.__doc__, view_class.__name__
    # The transactions are its own: the lane's, and the DRF view's when the lane declines.
    return csrf_exempt(transaction.non_atomic_requests(view))
