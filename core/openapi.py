"""What the OpenAPI schema (``/api/schema/``, shown at ``/api/docs/``) says beyond each view's own
``extend_schema``: the error responses every operation can give, in the one error shape that
``core.errors`` renders.

Which errors an operation documents follows from how it is reached, the same way for every view:

- 400 always: text the database cannot store anywhere in the path, query or body (`invalid_text`,
  refused before any view), and validation of a body or query parameters;
- 401, 403 and 429 when it needs credentials (no or a refused key, a role or CSRF check that fails,
  too many failed key attempts from one address);
- 404 when its path names something (a workspace, a run …): missing and not-yours look the same;
- 409 for a write in a workspace (a name taken, a state change the run's state refuses …);
- 413 and 415 when it takes a body (over ``MAX_REQUEST_BODY_BYTES``, not JSON);
- 503 always (the database cannot be reached right now; retry after ``Retry-After``).

A view adds what only it can answer (410 for a used invitation, 422 for a reused idempotency key)
with ``error(...)`` in its ``extend_schema(responses=...)``. Two more things drf-spectacular would
not say on its own: a DELETE that reads a body documents it, and a list answered in an object of
its own (``core.pagination.results_envelope``) is documented as that object.
tests/test_schemathesis.py checks every answer against the schema.
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
         "`json_too_deep` for JSON nested more than 100 levels), or the path, query or body holds a NUL or a lone "
         "surrogate, which cannot be stored (`invalid_text`); `details` names the fields.",
    401: "No credentials, or the API key or session was refused (`not_authenticated`, `authentication_failed`). "
         "Send `Authorization: Bearer fd_…`.",
    403: "Your role does not allow this (`permission_denied`; `details` has the action and your role), or a "
         "session request came without its CSRF token (`csrf_failed`).",
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
# What creating a run or inviting someone answers past the plan's limit (billing on only).
QUOTA_EXCEEDED = error(
    "A plan's limit stops this (`quota_exceeded`, only where billing is on): `details` has `limit` (`runs` or "
    "`seats`), `used`, `allowed`, `requested`, `plan` and, for runs, `resets_at`; the message says how to raise it.")


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

    def _is_list_view(self, serializer: Any = None) -> bool:
        main = self.get_response_serializers() if serializer is None else serializer
        if isinstance(main, dict) and main:
            main = {str(code): value for code, value in main.items()}
            main = main[min(main)]
        if getattr(main, "results_envelope", False):
            return True  # core.pagination.results_envelope: a list, answered in an object
        return super()._is_list_view(serializer)

    def _get_request_body(self, direction: str = "request") -> Any:
        # drf-spectacular documents a body for PUT, PATCH and POST only. A DELETE that reads one
        # (deleting a workspace needs `confirm_slug`) declares it with extend_schema(request=...):
        # document it like a POST's. A DELETE that declares none has no body.
        if self.method != "DELETE":
            return super()._get_request_body(direction)
        self._no_guessing = True
        try:
            declared = self.get_request_serializer()
        finally:
            self._no_guessing = False
        if declared is None:
            return None
        self.method = "POST"
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"

    def _get_serializer(self) -> Any:
        # Our views are APIViews that declare their bodies in extend_schema: asked for a DELETE's
        # body that was not declared, there is none (drf-spectacular would warn that it cannot guess).
        if getattr(self, "_no_guessing", False):
            return None
        return super()._get_serializer()

    def _error_codes(self, operation: dict[str, Any]) -> set[int]:
        codes = {400, 503}  # 400: core.text_guard refuses unstorable text in any request, before any view
        has_body = "requestBody" in operation
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
