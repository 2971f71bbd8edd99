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
from collections.abc import Callable
from typing import Any

from django.conf import settings
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
from graphql.error import located_error
from graphql.execution import ExecutionContext
from graphql.execution.execute import get_field_def
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, is_iterable
from graphql_sync_dataloaders import DeferredExecutionContext, SyncFuture

from accounts.graphql.context import context_for
from core import tenancy

logger = logging.getLogger(__name__)

#: Lexical tokens a document may have; keeps parsing and validation cheap whatever is sent.
MAX_TOKENS = 20_000
INTROSPECTION_FIELDS = ("__schema", "__type")
HTTP_ERROR_CODES = {400: "malformed_request", 405: "method_not_allowed"}


# --- Execution ---------------------------------------------------------------------------------
#
# DataLoaders hand back SyncFutures that settle only when their batch runs, after the synchronous
# pass over the document. graphql-sync-dataloaders 0.1.1's DeferredExecutionContext has two faults
# with graphql-core 3.2.14: it calls ``handle_field_error`` without the ``path`` argument, and an
# error on a non-null field inside a deferred callback escapes the callback instead of nulling the
# nearest nullable parent (the whole operation then fails with "deferred execution failed to
# complete"). The context below keeps its approach (SyncFutures, deferred batch callbacks) and
# redoes the completion so that every future settles with a value or with the error to propagate,
# exactly as graphql-core's own (sync and async) paths behave.


def _when_done(future: SyncFuture, callback: Callable[[], None]) -> None:
    if future.done():
        callback()
    else:
        future.add_done_callback(callback)


def _follow(source: SyncFuture, target: SyncFuture) -> None:
    def settle() -> None:
        error = source.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(source.result())

    _when_done(source, settle)


def _then(source: SyncFuture, on_value: Callable[[Any], Any]) -> SyncFuture:
    """A future of ``on_value(source's value)``; an error (from the source or ``on_value``) passes on."""
    target = SyncFuture()

    def settle() -> None:
        try:
            value = on_value(source.result())
        except Exception as error:
            target.set_exception(error)
            return
        if isinstance(value, SyncFuture):
            _follow(value, target)
        else:
            target.set_result(value)

    _when_done(source, settle)
    return target


def _recover(source: SyncFuture, on_error: Callable[[Exception], Any]) -> Any:
    """The source's value, or ``on_error(error)``, which returns a replacement (null) or raises to
    propagate. Settled results come back as plain values (or raised), pending ones as a future."""
    target = SyncFuture()

    def settle() -> None:
        error = source.exception()
        if error is None:
            target.set_result(source.result())
            return
        try:
            target.set_result(on_error(error))
        except Exception as propagated:
            target.set_exception(propagated)

    _when_done(source, settle)
    if target.done():
        return target.result()
    return target


def _gather(container: Any, keys: list[Any]) -> SyncFuture:
    """A future of ``container`` once the futures at ``keys`` have settled into it; the first error
    to propagate fails the whole container (its parent becomes null)."""
    target = SyncFuture()
    remaining = len(keys)

    def settle(key: Any, future: SyncFuture) -> None:
        nonlocal remaining
        if target.done():
            return
        error = future.exception()
        if error is not None:
            target.set_exception(error)
            return
        container[key] = future.result()
        remaining -= 1
        if not remaining:
            target.set_result(container)

    for key in keys:
        future = container[key]
        _when_done(future, lambda key=key, future=future: settle(key, future))
    return target


class FlowdeckExecutionContext(DeferredExecutionContext):
    """Execution for request-scoped DataLoaders: batches run after the synchronous pass, errors
    null the nearest nullable field as the spec says, and root mutation fields still complete one
    after another (their payloads included) before the next one starts."""

    def execute_operation(self, operation: OperationDefinitionNode, root_value: Any) -> Any:
        self._deferred_callbacks = []
        result = ExecutionContext.execute_operation(self, operation, root_value)
        self._drain()
        if isinstance(result, SyncFuture):
            return result.result()  # an error that propagated to the root is raised for execute()
        return result

    def _drain(self) -> None:
        callbacks = self._deferred_callbacks
        while callbacks:
            callbacks.pop(0)()

    def _defer(self, future: SyncFuture) -> None:
        if not future.done() and future.deferred_callback:
            self._deferred_callbacks.append(future.deferred_callback)

    def execute_fields_serially(self, parent_type: Any, source_value: Any, path: Any, fields: Any) -> Any:
        results: dict[str, Any] = {}
        for response_name, field_nodes in fields.items():
            result = self.execute_field(parent_type, source_value, field_nodes, Path(path, response_name, parent_type.name))
            self._drain()
            if isinstance(result, SyncFuture):
                result = result.result()
            if result is not Undefined:
                results[response_name] = result
        return results

    def execute_fields(self, parent_type: Any, source_value: Any, path: Any, fields: Any) -> Any:
        results: dict[str, Any] = {}
        pending: list[str] = []
        for response_name, field_nodes in fields.items():
            result = self.execute_field(parent_type, source_value, field_nodes, Path(path, response_name, parent_type.name))
            if result is Undefined:
                continue
            results[response_name] = result
            if isinstance(result, SyncFuture):
                pending.append(response_name)
        return _gather(results, pending) if pending else results

    def execute_field(self, parent_type: Any, source: Any, field_nodes: Any, path: Path) -> Any:
        field_def = get_field_def(self.schema, parent_type, field_nodes[0])
        if not field_def:
            return Undefined
        return_type = field_def.type
        resolve_fn = field_def.resolve or self.field_resolver
        if self.middleware_manager:
            resolve_fn = self.middleware_manager.get_field_resolver(resolve_fn)
        info = self.build_resolve_info(field_def, field_nodes, parent_type, path)

        def on_error(raw_error: Exception) -> None:
            error = located_error(raw_error, field_nodes, path.as_list())
            self.handle_field_error(error, return_type, path)  # raises when the field is non-null

        try:
            args = get_argument_values(field_def, field_nodes[0], self.variable_values)
            result = resolve_fn(source, info, **args)
            if isinstance(result, SyncFuture):
                self._defer(result)
                completed = _then(result, lambda value: self.complete_value(return_type, field_nodes, info, path, value))
            else:
                completed = self.complete_value(return_type, field_nodes, info, path, result)
        except Exception as raw_error:
            return on_error(raw_error)
        if isinstance(completed, SyncFuture):
            return _recover(completed, on_error)
        return completed

    def complete_list_value(self, return_type: Any, field_nodes: Any, info: Any, path: Path, result: Any) -> Any:
        if not is_iterable(result):
            raise GraphQLError(
                f"Expected Iterable, but did not find one for field '{info.parent_type.name}.{info.field_name}'."
            )
        item_type = return_type.of_type
        completed: list[Any] = []
        pending: list[int] = []
        for index, item in enumerate(result):
            item_path = path.add_key(index, None)

            def on_error(raw_error: Exception, item_path: Path = item_path) -> None:
                error = located_error(raw_error, field_nodes, item_path.as_list())
                self.handle_field_error(error, item_type, item_path)

            try:
                if isinstance(item, SyncFuture):
                    self._defer(item)
                    value = _then(
                        item,
                        lambda v, item_path=item_path: self.complete_value(item_type, field_nodes, info, item_path, v),
                    )
                else:
                    value = self.complete_value(item_type, field_nodes, info, item_path, item)
            except Exception as raw_error:
                value = on_error(raw_error)
            if isinstance(value, SyncFuture):
                value = _recover(value, on_error)
            if isinstance(value, SyncFuture):
                pending.append(index)
            completed.append(value)
        return _gather(completed, pending) if pending else completed


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
        default = definition.args["first"].default_value
        value: Any = default
        for argument in node.arguments:
            if argument.name.value == "first":
                value = self.argument_value(argument.value, default)
        if value is None:
            value = default  # an explicit null asks for the default page
        return max(value, 0) if isinstance(value, int) and not isinstance(value, bool) else 1

    def argument_value(self, node: Any, default: Any) -> Any:
        """The value an argument will have at execution, as far as validation can know it."""
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self.variables:
                return self.variables[name]
            if name not in self.variable_defaults:
                return default  # an omitted variable leaves the argument's default in place
            node = self.variable_defaults[name]
        if isinstance(node, IntValueNode):
            return int(node.value)
        return None


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
            tenancy.restore(rls_token)  # a no-op when the transaction failed: its rollback drops the setting

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
        masked = {"message": "Internal server error.", "extensions": {"code": "internal_error"}}
        if isinstance(error, GraphQLError):
            masked.update({k: v for k, v in error.formatted.items() if k in ("locations", "path")})
        return masked
