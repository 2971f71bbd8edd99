"""What the OpenAPI schema (``/api/schema/``, shown at ``/api/docs/``) says beyond each view's own
``extend_schema``: the error responses every operation can give, in the one error shape that
``core.errors`` renders.

Which errors an operation documents follows from how it is reached, the same way for every view:

- 400 when it takes a body or query parameters (validation);
- 401, 403 and 429 when it needs credentials (no or a refused key, a role or CSRF check that fails,
  too many failed key attempts from one address);
- 404 when its path names something (a workspace, a run …): missing and not-yours look the same;
- 409 for a write in a workspace (a name taken, a state change the run's state refuses …);
- 413 and 415 when it takes a body (over ``MAX_REQUEST_BODY_BYTES``, not JSON);
- 503 always (the database cannot be reached right now; retry after ``Retry-After``).

A view adds what only it can answer (410 for a used invitation, 422 for a reused idempotency key)
with ``error(...)`` in its ``extend_schema(responses=...)``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: switch on this (e.g. `not_found`, `conflict`).")
    message = serializers.CharField(help_text="What went wrong and what to do, for a person.")
    details = serializers.JSONField(
        help_text="More about the error: for invalid input, the problems per field "
                  """(`{"name": ["This field is required."]}`); `{}` when there is nothing more.""")


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers, whatever its status."""

    error = ErrorDetailSerializer()


def error(description: str) -> OpenApiResponse:
    """An error response with the one error body, for ``extend_schema(responses={410: error(...)})``."""
    return OpenApiResponse(response=ErrorSerializer, description=description)


# Status → what it means in this API, said once for every operation that documents it.
ERROR_DESCRIPTIONS = {
    400: "Invalid input: the body or a query parameter was refused (`invalid`, `malformed_request`, "
         "`json_too_deep` for JSON nested more than 100 levels); `details` names the fields.",
    401: "No credentials, or the API key or session was refused (`not_authenticated`, `authentication_failed`). "
         "Send `Authorization: Bearer fd_…`.",
    403: "Your role does not allow this (`permission_denied`; `details` has the action and your role), or a "
         "session request came without its CSRF token.",
    404: "Not found, or not visible to you (`not_found`): another workspace's objects look missing.",
    409: "Conflicts with the current state (`conflict` or a more specific code such as `name_taken`, "
         "`transition_refused`).",
    413: "The request body is larger than the server accepts (`request_too_large`).",
    415: "The body is not JSON (`unsupported_media_type`): send `Content-Type: application/json`.",
    429: "Too many requests, e.g. failed API key attempts from your address (`rate_limited`); wait for "
         "`Retry-After` seconds.",
    503: "The database cannot be reached right now (`database_unavailable`); nothing was done, retry after "
         "`Retry-After` seconds.",
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class FlowdeckAutoSchema(AutoSchema):
    """drf-spectacular's schema for one operation, plus the error responses it can give."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation.setdefault("responses", {})
        for code in sorted(self._error_codes(operation)):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(error(ERROR_DESCRIPTIONS[code]), str(code))
        return operation

    def _error_codes(self, operation: dict[str, Any]) -> set[int]:
        codes = {503}
        has_body = "requestBody" in operation
        if has_body or any(p.get("in") == "query" for p in operation.get("parameters", [])):
            codes.add(400)
        if has_body:
            codes |= {413, 415}
        security = operation.get("security", [])
        if security and {} not in security:  # an operation open to anonymous callers lists {}
            codes |= {401, 403, 429}
        if "{" in self.path:
            codes.add(404)
        if self.method in UNSAFE_METHODS and "{workspace_slug}" in self.path:
            codes.add(409)
        return codes
