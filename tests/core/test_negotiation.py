"""The shortcut in core.negotiation gives exactly DRF's answer, and leaves every other request to
DRF: compared request by request over Accept headers, query strings and renderer lists."""

from __future__ import annotations

import pytest
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from rest_framework import renderers as r
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.test import APIRequestFactory

from core.negotiation import FlowdeckContentNegotiation


class VersionedJSON(r.JSONRenderer):
    media_type = "application/json; version=2"


ACCEPTS = [None, "*/*", "application/json", "application/json; indent=4", "text/html", "application/*",
           "text/html, */*;q=0.8", "application/yaml", "", " */*", "*/*;q=0.5", "application/json, text/html",
           "application/vnd.oai.openapi", "application/vnd.oai.openapi+json", "image/png"]
QUERIES = ["", "format=json", "format=api", "limit=5", "format=openapi-json"]
RENDERER_SETS = [
    [r.JSONRenderer],
    [r.JSONRenderer, r.BrowsableAPIRenderer],
    [r.BrowsableAPIRenderer, r.JSONRenderer],
    [OpenApiYamlRenderer, OpenApiJsonRenderer],
    [VersionedJSON, r.JSONRenderer],
    [VersionedJSON],
]


def _answer(negotiation, accept, query, renderer_classes, suffix=None):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().post("/api/v1/x/" + (f"?{query}" if query else ""), **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, [c() for c in renderer_classes], suffix)
    except NotAcceptable:
        return "406"
    except Exception as exc:  # noqa: BLE001 - compared by type
        return type(exc).__name__
    return type(renderer), media_type


@pytest.mark.parametrize("renderer_classes", RENDERER_SETS, ids=lambda rs: "+".join(c.__name__ for c in rs))
def test_every_request_gets_drfs_answer(renderer_classes):
    for accept in ACCEPTS:
        for query in QUERIES:
            for suffix in (None, "json"):
                ours = _answer(FlowdeckContentNegotiation(), accept, query, renderer_classes, suffix)
                drf = _answer(DefaultContentNegotiation(), accept, query, renderer_classes, suffix)
                assert ours == drf, (accept, query, suffix)


def test_the_common_requests_skip_drfs_parsing(monkeypatch):
    """No query string and an Accept of */* or exactly the renderer's type: answered without DRF."""
    calls = []
    monkeypatch.setattr(DefaultContentNegotiation, "select_renderer", lambda *a, **k: calls.append(a))
    for accept in (None, "*/*", "application/json"):
        renderer, media_type = _answer(FlowdeckContentNegotiation(), accept, "", [r.JSONRenderer])
        assert (renderer, media_type) == (r.JSONRenderer, "application/json")
    assert calls == []
    _answer(FlowdeckContentNegotiation(), "*/*", "format=json", [r.JSONRenderer])
    _answer(FlowdeckContentNegotiation(), "application/json; indent=4", "", [r.JSONRenderer])
    assert len(calls) == 2


def test_the_api_uses_it():
    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is FlowdeckContentNegotiation
