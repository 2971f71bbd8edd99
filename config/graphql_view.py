"""The GraphQL endpoint (``/graphql``): the web app's API.

* Session authentication only; unsafe requests go through Django's CSRF check like any form (B7):
  the view is not ``csrf_exempt``.
* Before anything executes, validation rules cap the depth and the cost of a document and, when
  ``GRAPHQL_INTROSPECTION`` is off (production), refuse introspection (B8). GET runs queries only.
* The operation runs inside the request's transaction (``ATOMIC_REQUESTS``) with row-level security
  scoped to the workspaces the signed-in user belongs to (C2).
* DataLoaders run deferred (``graphql-sync-dataloaders``); mutations still complete one by one.
* Errors that are not ours to explain (bugs) are logged and answered as ``internal_error`` without
  their text.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseNotAllowed
from graphene_django.settings import graphene_settings
from graphene_django.utils.utils import set_rollback
from graphene_django.views import GraphQLView, HttpError
from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    execute,
    get_named_type,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.pyutils import Path, Undefined
from graphql_sync_dataloaders import DeferredExecutionContext, SyncFuture

from accounts.graphql.context import context_for
from core import tenancy

logger = logging.getLogger(__name__)

#: Lexical tokens a document may have; keeps parsing and validation cheap whatever is sent.
MAX_TOKENS = 20_000
INTROSPECTION_FIELDS = ("__schema", "__type")
HTTP_ERROR_CODES = {400: "malformed_request", 405: "method_not_allowed"}


# --- Execution ---------------------------------------------------------------------------------


class FlowdeckExecutionContext(DeferredExecutionContext):
    """Deferred execution for DataLoaders, with mutations kept serial.

    ``DeferredExecutionContext`` runs the DataLoader batches once, after the whole operation. For a
    mutation document that would let the second mutation run before the first one's payload is
    read. The spec says each root mutation field completes, selections included, before the next
    starts, so the batches are drained after each one.
    """

    def execute_fields_serially(self, parent_type: Any, source_value: Any, path: Any, fields: Any) -> Any:
        results: dict[str, Any] = {}
        for response_name, field_nodes in fields.items():
            field_path = Path(path, response_name, parent_type.name)
            result = self.execute_field(parent_type, source_value, field_nodes, field_path)
            callbacks = self._deferred_callbacks
            while callbacks:
                callbacks.pop(0)()
            if isinstance(result, SyncFuture):
                result = result.result()
            if result is not Undefined:
                results[response_name] = result
        return results


# --- Validation rules (B8) ---------------------------------------------------------------------


class _Measure:
    """Depth and cost of one operation, following fragments (each measured once).

    Cost counts every field once, and a field with a ``first`` argument (a page) counts its
    selections that many times. Depth counts nested fields. ``__typename`` is free; when
    introspection is allowed its fields are not measured (they are refused outright otherwise).
    """

    def __init__(self, context: ValidationContext, operation: OperationDefinitionNode, variables: dict[str, Any]):
        self.context = context
        self.schema = context.schema
        self.variables = variables
        self.variable_defaults = {
            d.variable.name.value: d.default_value for d in operation.variable_definitions or () if d.default_value
        }
        self.fragments: dict[str, tuple[int, int]] = {}
        self.visiting: set[str] = set()

    def operation(self, operation: OperationDefinitionNode) -> tuple[int, int]:
        return self.selection_set(operation.selection_set, self.schema.get_root_type(operation.operation))

    def selection_set(self, selection_set: SelectionSetNode | None, parent_type: Any) -> tuple[int, int]:
        depth = cost = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                d, c = self.field(selection, parent_type)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                d, c = self.selection_set(
                    selection.selection_set, self.schema.get_type(condition.name.value) if condition else parent_type
                )
            elif isinstance(selection, FragmentSpreadNode):
                d, c = self.fragment(selection.name.value)
            else:  # pragma: no cover - the AST has no other selection kinds
                continue
            depth, cost = max(depth, d), cost + c
        return depth, cost

    def fragment(self, name: str) -> tuple[int, int]:
        if name in self.fragments:
            return self.fragments[name]
        fragment = self.context.get_fragment(name)
        if fragment is None or name in self.visiting:
            return 0, 0  # unknown fragments and cycles are reported by the standard rules
        self.visiting.add(name)
        measured = self.selection_set(fragment.selection_set, self.schema.get_type(fragment.type_condition.name.value))
        self.visiting.discard(name)
        self.fragments[name] = measured
        return measured

    def field(self, node: FieldNode, parent_type: Any) -> tuple[int, int]:
        name = node.name.value
        if name == "__typename":
            return 1, 0
        if name in INTROSPECTION_FIELDS:
            return 0, 0
        definition = getattr(parent_type, "fields", {}).get(name)
        child_type = get_named_type(definition.type) if definition else None
        depth, cost = self.selection_set(node.selection_set, child_type)
        return 1 + depth, 1 + self.page_size(node, definition) * cost

    def page_size(self, node: FieldNode, definition: Any) -> int:
        if definition is None or "first" not in definition.args:
            return 1
        value: Any = definition.args["first"].default_value
        for argument in node.arguments:
            if argument.name.value != "first":
                continue
            value_node = argument.value
            if isinstance(value_node, VariableNode):
                name = value_node.name.value
                value_node = self.variable_defaults.get(name, value_node)
                if name in self.variables:
                    value = self.variables[name]
                    break
            value = int(value_node.value) if isinstance(value_node, IntValueNode) else None
        return max(value, 0) if isinstance(value, int) and not isinstance(value, bool) else 1


def _measure(rule: ValidationRule, node: OperationDefinitionNode, variables: dict[str, Any]) -> tuple[int, int] | None:
    try:
        return _Measure(rule.context, node, variables).operation(node)
    except RecursionError:
        rule.report_error(
            GraphQLError("This document is nested too deeply to read.", node, extensions={"code": "query_too_deep"})
        )
        return None


def depth_limit_rule(max_depth: int, variables: dict[str, Any]) -> type[ValidationRule]:
    class DepthLimitRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            measured = _measure(self, node, variables)
            if measured and measured[0] > max_depth:
                self.report_error(
                    GraphQLError(
                        f"This operation nests fields {measured[0]} levels deep; the limit is {max_depth}. "
                        "Ask for fewer nested levels or split it into several operations.",
                        node,
                        extensions={"code": "query_too_deep", "depth": measured[0], "maxDepth": max_depth},
                    )
                )

    return DepthLimitRule


def cost_limit_rule(max_cost: int, variables: dict[str, Any]) -> type[ValidationRule]:
    class CostLimitRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            measured = _measure(self, node, variables)
            if measured and measured[1] > max_cost:
                self.report_error(
                    GraphQLError(
                        f"This operation costs {measured[1]}; the limit is {max_cost} (each field costs 1 and a page "
                        "of 'first: n' counts its fields n times). Ask for fewer fields or smaller pages.",
                        node,
                        extensions={"code": "query_too_costly", "cost": measured[1], "maxCost": max_cost},
                    )
                )

    return CostLimitRule


class NoIntrospectionRule(ValidationRule):
    """``__schema`` and ``__type`` are refused; ``__typename`` stays (clients use it for caching)."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value in INTROSPECTION_FIELDS:
            self.report_error(
                GraphQLError(
                    "Introspection is disabled on this server.", node, extensions={"code": "introspection_disabled"}
                )
            )


def validation_rules(variables: dict[str, Any]) -> list[type[ValidationRule]]:
    rules: list[type[ValidationRule]] = [
        depth_limit_rule(settings.GRAPHQL_MAX_DEPTH, variables),
        cost_limit_rule(settings.GRAPHQL_MAX_COST, variables),
    ]
    if not settings.GRAPHQL_INTROSPECTION:
        rules.append(NoIntrospectionRule)
    return [*rules, *specified_rules]


# --- The view ----------------------------------------------------------------------------------


def _is_unexpected(error: Exception) -> bool:
    if not isinstance(error, GraphQLError):
        return True
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


class FlowdeckGraphQLView(GraphQLView):
    execution_context_class = FlowdeckExecutionContext
    batch = False

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # The GraphiQL page needs introspection; it is served where introspection is allowed.
        self.graphiql = bool(settings.GRAPHQL_INTROSPECTION)

    def parse_body(self, request: HttpRequest) -> Any:
        if self.get_content_type(request) != "application/json":
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
        errors = validate(schema, document, validation_rules(variables or {}), graphene_settings.MAX_VALIDATION_ERRORS)
        if errors:
            return ExecutionResult(data=None, errors=errors)

        rls_token = tenancy.enter_workspaces(context_for(request).member_workspace_ids())
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
            _restore(rls_token)

    def get_response(self, request: HttpRequest, data: Any, show_graphiql: bool = False) -> tuple[str | None, int]:
        query, variables, operation_name, _id = self.get_graphql_params(request, data)
        result = self.execute_graphql_request(request, data, query, variables, operation_name, show_graphiql)
        if result is None:
            return None, 200
        body: dict[str, Any] = {}
        status_code = 200
        if result.errors:
            body["errors"] = [self.format_error(error) for error in result.errors]
            # Expected errors (a field the role may not read, a bad argument) change nothing, and each
            # mutation already rolled back its own savepoint when it failed. A bug rolls back the request.
            if any(_is_unexpected(error) for error in result.errors):
                set_rollback()
            if any(not getattr(error, "path", None) for error in result.errors):
                status_code = 400
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
        masked = {"message": "Internal server error.", "extensions": {"code": "internal_error"}}
        if isinstance(error, GraphQLError):
            masked.update({k: v for k, v in error.formatted.items() if k in ("locations", "path")})
        return masked


def _restore(token: tenancy.RlsToken) -> None:
    """Put the request's row-level-security setting back. A transaction that is being rolled back
    drops the setting anyway (and takes no more queries)."""
    if connection.needs_rollback:
        return
    try:
        tenancy.restore(token)
    except DatabaseError:
        transaction.set_rollback(True)
