"""Task helpers (Prefect 1's ``prefect.utilities.tasks``): the ``@task`` decorator, ``tags``, ``as_task``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, overload

from flowdeck.context import context

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow
    from flowdeck.core.task import Task
    from flowdeck.tasks.core.function import FunctionTask


@overload
def task(fn: Callable[..., Any], /) -> FunctionTask: ...


@overload
def task(fn: None = None, /, **task_init_kwargs: Any) -> Callable[[Callable[..., Any]], FunctionTask]: ...


def task(
    fn: Callable[..., Any] | None = None, /, **task_init_kwargs: Any
) -> FunctionTask | Callable[[Callable[..., Any]], FunctionTask]:
    """Turn a function into a task: ``@task`` or ``@task(name=..., retries=..., ...)``.

    The keyword arguments are those of ``flowdeck.Task`` (``retries``/``max_retries``, ``retry_delay``,
    ``timeout``, ``cache_for``, ``cache_key_fn``, ``tags``, ``trigger``, ``state_handlers``,
    ``skip_on_upstream_skip``, ``checkpoint``, ``result``, ``target``, ``nout``, ``log_stdout`` …).
    """
    from flowdeck.tasks.core.function import FunctionTask

    if fn is None:

        def decorator(function: Callable[..., Any]) -> FunctionTask:
            return FunctionTask(fn=function, **task_init_kwargs)

        return decorator
    return FunctionTask(fn=fn, **task_init_kwargs)


@contextmanager
def tags(*names: str) -> Iterator[set[str]]:
    """Tasks created (or called) inside the block get these tags too."""
    current = set(context.get("tags", ())) | set(names)
    with context(tags=current):
        yield current


def contains_task(value: Any) -> bool:
    """Whether ``value`` is a task, or a list/tuple/set/dict holding one (at any depth)."""
    from flowdeck.core.task import Task

    if isinstance(value, Task):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_task(v) for v in value)
    if isinstance(value, dict):
        return any(contains_task(k) or contains_task(v) for k, v in value.items())
    return False


def as_task(value: Any, flow: Flow | None = None) -> Task:
    """``value`` as a task: tasks as they are; collections holding tasks become List/Tuple/Set/Dict tasks
    (bound into ``flow``); other values become ``Constant`` tasks."""
    from flowdeck.core.task import Task
    from flowdeck.tasks.core.collections import Dict, List, Set, Tuple
    from flowdeck.tasks.core.constants import Constant

    if isinstance(value, Task):
        return value
    if not contains_task(value):
        return Constant(value)
    if isinstance(value, dict):
        items: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            items[f"key_{i}"] = k
            items[f"value_{i}"] = v
        return Dict().bind(flow=flow, **items)
    cls: type[List] = List
    if isinstance(value, tuple):
        cls = Tuple
    elif isinstance(value, (set, frozenset)):
        cls = Set
    return cls().bind(flow=flow, **{f"item_{i}": v for i, v in enumerate(value)})


__all__ = ["task", "tags", "as_task", "contains_task"]
