"""How lists are paged, and how the OpenAPI schema says so.

A view that pages with a cursor sets ``pagination_class``: it pages with that class, and the schema
(drf-spectacular reads the same attribute) documents ``{"next", "previous", "results"}`` with the
``cursor`` and ``limit`` parameters. A list answered whole or paged by a key of its own
(``{"results": [...], "next_after": …}``) documents its envelope with :func:`results_envelope`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.drainage import set_override
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination


class CreatedCursorPagination(CursorPagination):
    """Cursor pagination on creation time: stable under inserts, no OFFSET scans."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


def results_envelope(name: str, item: type[serializers.Serializer], **more: serializers.Field) -> Any:
    """The schema of ``{"results": [item, …], **more}``, for ``extend_schema(responses=...)``: the
    operation is still a list (its operationId ends in ``_list``), documented as this object rather
    than wrapped in an array (core.openapi.FlowdeckAutoSchema reads the mark)."""
    envelope = inline_serializer(name=name, fields={"results": item(many=True), **more})
    set_override(envelope, "many", False)
    envelope.results_envelope = True
    return envelope
