"""The GraphQL endpoint (``/graphql``): the web app's API.

* Session authentication only; unsafe requests go through Django's CSRF check like any form (B7):
  the view is not ``csrf_exempt``.
* Before anything executes, validation rules cap the depth and the cost of a document and, when
  ``GRAPHQL_INTROSPECTION`` is off (production), refuse introspection (B8). GET runs queries only.
* The operation runs inside the request's transaction (``ATOMIC_REQUESTS``) with row-level security
  scoped to the workspaces the signed-in user belongs to (C2).
* DataLoaders run deferred (``graphql-sync-dataloaders``); mutations still complete one by one.
* Errors that are not ours to explain (bugs) are logged and answered as ``internal_error`` without
  their text. A database that cannot be reached is not a field's error: the request answers 503.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseNotAllowed
from graphene_django.settings import graphene_settings
from graphene_django.utils.utils import set_rollback
from graphene_django.views import GraphQLView, HttpError
from graphql import (
    ExecutionResult,
    GraphQLError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from accounts.graphql.context import context_for
from core import tenancy
from core.errors import is_database_unavailable
from core.graphql.execution import FlowdeckExecutionContext
from core.graphql.limits import validation_rules

logger = logging.getLogger(__name__)

#: Lexical tokens a document may have; keeps parsing and validation cheap whatever is sent.
MAX_TOKENS = 20_000
HTTP_ERROR_CODES = {400: "malformed_request", 405: "method_not_allowed"}


# --- The view ----------------------------------------------------------------------------------


def _is_unexpected(error: Exception) -> bool:
    if not isinstance(error, GraphQLError):
        return True
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


def _the_documents_fault(error: GraphQLError) -> GraphQLError:
    """A validation error is the document's, even when a scalar's literal parser raised a plain
    exception (a ``JSONString`` literal that is not JSON raises ValueError): answered 400 with its
    message, not masked as a bug."""
    if error.original_error is None or isinstance(error.original_error, GraphQLError):
        return error
    return GraphQLError(error.message, error.nodes, extensions=error.extensions)


class FlowdeckGraphQLView(GraphQLView):
    execution_context_class = FlowdeckExecutionContext
    batch = False

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # The GraphiQL page needs introspection; it is served where introspection is allowed.
        self.graphiql = bool(settings.GRAPHQL_INTROSPECTION)

    def parse_body(self, request: HttpRequest) -> Any:
        content_type = self.get_content_type(request)
        if content_type == "application/graphql":
            try:
                return {"query": request.body.decode("utf-8")}
            except UnicodeDecodeError:
                raise HttpError(HttpResponseBadRequest("The request body is not UTF-8 text."))
        if content_type != "application/json":
            return super().parse_body(request)
        try:
            data = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HttpError(HttpResponseBadRequest("The request body is not valid JSON."))
        if not isinstance(data, dict):
            raise HttpError(HttpResponseBadRequest("The request body must be a JSON object with a 'query' string."))
        return data

    @staticmethod
    def get_graphql_params(request: HttpRequest, data: Any) -> tuple[Any, Any, Any, Any]:
        query, variables, operation_name, id_ = GraphQLView.get_graphql_params(request, data)
        if query is not None and not isinstance(query, str):
            raise HttpError(HttpResponseBadRequest("'query' must be a string."))
        if variables is not None and not isinstance(variables, dict):
            raise HttpError(HttpResponseBadRequest("'variables' must be a JSON object."))
        if operation_name is not None and not isinstance(operation_name, str):
            raise HttpError(HttpResponseBadRequest("'operationName' must be a string."))
        return query, variables, operation_name, id_

    def execute_graphql_request(
        self,
        request: HttpRequest,
        data: Any,
        query: str | None,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        show_graphiql: bool = False,
    ) -> ExecutionResult | None:
        if not query:
            if show_graphiql:
                return None
            raise HttpError(HttpResponseBadRequest("Must provide query string."))
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            return ExecutionResult(data=None, errors=[error])
        except RecursionError:
            return ExecutionResult(data=None, errors=[GraphQLError("This document is nested too deeply to read.")])

        operation = get_operation_ast(document, operation_name)
        if request.method == "GET" and operation is not None and operation.operation != OperationType.QUERY:
            if show_graphiql:
                return None
            raise HttpError(
                HttpResponseNotAllowed(
                    ["POST"], f"A {operation.operation.value} must be sent as a POST request; GET only runs queries."
                )
            )

        schema = self.schema.graphql_schema
        anonymous = not request.user.is_authenticated
        rules = validation_rules(variables or {}, anonymous=anonymous)
        errors = validate(schema, document, rules, graphene_settings.MAX_VALIDATION_ERRORS)
        if errors:
            return ExecutionResult(data=None, errors=[_the_documents_fault(error) for error in errors])

        # The web app's pages: each statement planned for its values (tenancy.enter_workspaces).
        rls_token = tenancy.enter_workspaces(context_for(request).member_workspace_ids(), custom_plans=True)
        try:
            return execute(  # type: ignore[return-value]
                schema,
                document,
                root_value=self.get_root_value(request),
                context_value=self.get_context(request),
                variable_values=variables,
                operation_name=operation_name,
                middleware=self.get_middleware(request),
                execution_context_class=self.execution_context_class,
            )
        except Exception as error:  # the executor reports resolver errors itself; this is a bug
            return ExecutionResult(data=None, errors=[error])  # type: ignore[list-item]
        finally:
            # Nothing to restore when the request's own transaction (ATOMIC_REQUESTS) ends with it, nor when
            # the transaction failed: its rollback drops the setting.
            tenancy.restore_unless_request_ends(rls_token)

    def get_response(self, request: HttpRequest, data: Any, show_graphiql: bool = False) -> tuple[str | None, int]:
        query, variables, operation_name, _id = self.get_graphql_params(request, data)
        result = self.execute_graphql_request(request, data, query, variables, operation_name, show_graphiql)
        if result is None:
            return None, 200
        body: dict[str, Any] = {}
        status_code = 200
        for error in result.errors or ():
            original = getattr(error, "original_error", None) or error
            if is_database_unavailable(original):
                # The database is down, not a field broken: the request answers 503 + Retry-After
                # (core.middleware.DatabaseUnavailableMiddleware), like REST.
                raise original
        if result.errors:
            body["errors"] = [self.format_error(error) for error in result.errors]
            # Expected errors (a field the role may not read, a bad argument) change nothing, and each
            # mutation already rolled back its own savepoint when it failed. A bug rolls back the request.
            if any(_is_unexpected(error) for error in result.errors):
                set_rollback()
            whole = [error for error in result.errors if not getattr(error, "path", None)]
            if whole:
                # The document was refused as a whole: a bad request, or a bug outside any field.
                status_code = 500 if any(_is_unexpected(error) for error in whole) else 400
        if status_code == 200:
            body["data"] = result.data
        return self.json_encode(request, body, pretty=show_graphiql), status_code

    @staticmethod
    def format_error(error: Exception) -> dict[str, Any]:
        if isinstance(error, HttpError):
            code = HTTP_ERROR_CODES.get(error.response.status_code, "malformed_request")
            return {"message": error.message, "extensions": {"code": code}}
        if not _is_unexpected(error):
            formatted: dict[str, Any] = dict(error.formatted)  # type: ignore[attr-defined]
            extensions = dict(formatted.get("extensions") or {})
            extensions.setdefault("code", "invalid_query" if not getattr(error, "path", None) else "error")
            formatted["extensions"] = extensions
            return formatted
        original = getattr(error, "original_error", None) or error
        logger.error("GraphQL request failed", exc_info=(type(original), original, original.__traceback__))
        masked: dict[str, Any] = {"message": "Internal server error.", "extensions": {"code": "internal_error"}}
        if isinstance(error, GraphQLError):
            masked.update({k: v for k, v in error.formatted.items() if k in ("locations", "path")})
        return masked
