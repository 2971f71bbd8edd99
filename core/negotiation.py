"""Content negotiation without parsing for the requests almost every client sends.

DRF's negotiation parses the query string (for ``?format=``) and every ``Accept`` token into media
types on each request: about 3 % of an agent's request. Agents, the SDK and the web app send no
``format`` and accept anything (``*/*``, httpx's default) or exactly our JSON; for those DRF always
picks the first renderer and its own media type, so that answer is given at once. Everything else
(a query string, several types, parameters such as ``indent``, an unknown type) goes to DRF as
before; ``tests/core/test_negotiation.py`` compares the two."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation


class FlowdeckContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> Any:
        if renderers and not format_suffix and not request.META.get("QUERY_STRING"):
            accept = request.META.get("HTTP_ACCEPT", "*/*")
            first = renderers[0]
            # A renderer type with parameters matches "*/*" only when they agree: DRF decides.
            if ";" not in first.media_type and accept in ("*/*", first.media_type):
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
