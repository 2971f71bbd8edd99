"""GraphQL execution with request-scoped DataLoaders (see the comment below)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLError,
    OperationDefinitionNode,
)
from graphql.error import located_error
from graphql.execution import ExecutionContext
from graphql.execution.execute import get_field_def
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, is_iterable
from graphql_sync_dataloaders import DeferredExecutionContext, SyncFuture

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
        _when_done(future, lambda key=key, future=future: settle(key, future))  # type: ignore[misc]
    return target


class FlowdeckExecutionContext(DeferredExecutionContext):
    """Execution for request-scoped DataLoaders: batches run after the synchronous pass, errors
    null the nearest nullable field as the spec says, and root mutation fields still complete one
    after another (their payloads included) before the next one starts."""

    def execute_operation(self, operation: OperationDefinitionNode, root_value: Any) -> Any:
        self._deferred_callbacks: list[Any] = []
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
            field_path = Path(path, response_name, parent_type.name)
            result = self.execute_field(parent_type, source_value, field_nodes, field_path)
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
            field_path = Path(path, response_name, parent_type.name)
            result = self.execute_field(parent_type, source_value, field_nodes, field_path)
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
                completed = _then(
                    result, lambda value: self.complete_value(return_type, field_nodes, info, path, value)
                )
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
                        lambda v, item_path=item_path: self.complete_value(  # type: ignore[misc]
                            item_type, field_nodes, info, item_path, v
                        ),
                    )
                else:
                    value = self.complete_value(item_type, field_nodes, info, item_path, item)
            except Exception as raw_error:
                value = on_error(raw_error)  # type: ignore[func-returns-value]
            if isinstance(value, SyncFuture):
                value = _recover(value, on_error)
            if isinstance(value, SyncFuture):
                pending.append(index)
            completed.append(value)
        return _gather(completed, pending) if pending else completed
