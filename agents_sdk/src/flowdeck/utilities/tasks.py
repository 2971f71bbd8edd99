"""Task helpers (Prefect 1's ``prefect.utilities.tasks``): the ``@task`` decorator, ``tags``, ``as_task``,
``apply_map``, ``defaults_from_attrs`` and ``pause_task``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

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


# --- run() defaults from attributes ------------------------------------------------------------------

RunMethod = TypeVar("RunMethod", bound=Callable[..., Any])


def defaults_from_attrs(*attr_args: str) -> Callable[[RunMethod], RunMethod]:
    """Make ``run()`` arguments fall back to the task's attributes of the same names.

    For task "templates": settings given to ``__init__`` are the defaults, a value passed to the
    task in the flow wins. An argument given explicitly, even as ``None``, is kept (as in Prefect 1)::

        class Fetch(Task):
            def __init__(self, url=None, **kwargs):
                self.url = url
                super().__init__(**kwargs)

            @defaults_from_attrs("url")
            def run(self, url=None):
                return download(url)

        Fetch(url="https://a")()            # runs with url="https://a"
        Fetch(url="https://a")(url=other)   # runs with other's result
    """
    for name in attr_args:
        if not isinstance(name, str):
            raise TypeError(
                "defaults_from_attrs takes attribute names: write @defaults_from_attrs('a', 'b'), "
                "not @defaults_from_attrs."
            )

    def decorator(run_method: RunMethod) -> RunMethod:
        signature = inspect.signature(run_method)
        missing = [n for n in attr_args if n not in signature.parameters]
        if missing:
            raise ValueError(f"defaults_from_attrs: {run_method.__name__}() has no argument(s) {missing}.")

        @wraps(run_method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            given = signature.bind_partial(self, *args, **kwargs).arguments
            for name in attr_args:
                if name not in given:
                    kwargs[name] = getattr(self, name)
            return run_method(self, *args, **kwargs)

        return cast(RunMethod, run)

    return decorator


# --- pausing -------------------------------------------------------------------------------------------


def pause_task(message: str | None = None, duration: timedelta | None = None) -> None:
    """Pause the running task for a person to approve: it ends ``Paused`` (and the flow run waits).

    Resuming the task (giving it a ``Resume`` state) runs it again *from the start*; this time
    ``pause_task`` returns instead of pausing. ``duration``: resume on its own after that long (the
    ``Paused`` state's ``start_time``); without it the pause lasts until someone resumes.
    """
    from flowdeck.engine import signals

    if context.get("resume", False):
        return
    extra: dict[str, Any] = {}
    if duration is not None:
        extra["start_time"] = datetime.now(UTC) + duration
    raise signals.PAUSE(message or "Pause signal raised during task execution.", **extra)


# --- apply_map -------------------------------------------------------------------------------------------


class _MapInput:
    """How ``apply_map`` passes one of its arguments to ``func``'s sub-graph."""

    __slots__ = ("mapped", "flattened", "constant")

    def __init__(self, mapped: bool, flattened: bool, constant: bool) -> None:
        self.mapped = mapped
        self.flattened = flattened
        self.constant = constant


def apply_map(func: Callable[..., Any], *args: Any, flow: Flow | None = None, **kwargs: Any) -> Any:
    """Map a function that *builds tasks* over its arguments: every task ``func`` creates becomes a
    mapped task, one child per element (Prefect 1's ``apply_map``).

    Use it for per-element pipelines that ``task.map`` cannot express, such as branches::

        def inc_or_dec(x):
            with case(is_even(x), True):
                up = inc(x)
            with case(is_even(x), False):
                down = dec(x)
            return merge(up, down)

        with Flow("example") as flow:
            results = apply_map(inc_or_dec, [1, 2, 3, 4])   # the merge task, mapped

    Arguments are mapped over (a task's result, or a list, tuple or other sequence) unless wrapped in
    ``unmapped(...)``; ``flatten(...)`` flattens one level first. Tasks ``func`` uses without receiving
    them as arguments are mapped over too, as in Prefect 1: pass them as ``unmapped(...)`` arguments
    to use them whole. Every task ``func`` creates waits for all the mapped arguments, even those it
    does not use. With ``flow=`` given, ``func`` must accept a ``flow`` keyword argument. Returns what
    ``func`` returns.
    """
    from flowdeck.core.flow import Flow
    from flowdeck.core.parameter import Parameter
    from flowdeck.core.task import Task
    from flowdeck.tasks.core.constants import Constant
    from flowdeck.utilities.edges import EdgeAnnotation, unwrap

    target = flow if flow is not None else context.get("flow")
    if target is None:
        raise ValueError(
            "apply_map() could not infer an active Flow: call it inside a `with Flow(...):` block or pass flow=…."
        )
    for value in (*args, *kwargs.values()):
        if not isinstance(value, (Task, EdgeAnnotation, Sequence)):
            raise TypeError(
                f"apply_map() cannot map over a {type(value).__name__}: give tasks, lists (or other sequences), "
                "or wrap the value in unmapped(...)."
            )

    # func builds its tasks in a scratch flow, so we can tell them apart and wire them as mapped;
    # blocks open around the call (case, resource managers) must not claim the scratch tasks.
    scratch = Flow(f"apply_map({getattr(func, '__name__', 'func')})")
    inputs: dict[Task, _MapInput] = {}

    def prepare(raw: Any) -> Task:
        value, is_mapped, flattened = unwrap(raw, True)
        with context(case=None, resource=None):
            node = as_task(value, flow=target) if contains_task(value) else value
        constant = not isinstance(node, Task)
        if constant:
            node = Constant(value)
        else:
            target.add_task(node)
        with context(case=None, resource=None):
            scratch.add_task(node)
        inputs[node] = _MapInput(is_mapped, flattened, constant)
        return node

    call_args = [prepare(a) for a in args]
    call_kwargs = {k: prepare(v) for k, v in kwargs.items()}
    existing = set(target.tasks)
    extra: dict[str, Any] = {"flow": scratch} if flow is not None else {}
    with context(case=None, resource=None), scratch:
        result = func(*call_args, **extra, **call_kwargs)

    created = [t for t in scratch.get_tasks() if t not in inputs and t not in existing]
    for t in created:
        if not t._explicit_slug:
            t.slug = None  # keyed afresh by the real flow
        target.add_task(t)
    for t in scratch.get_tasks():
        for edge in sorted(scratch.edges_to(t), key=lambda e: (e.key or "", scratch.key_of(e.upstream_task))):
            source = inputs.get(edge.upstream_task)
            if source is not None and source.constant and not source.mapped and edge.key is not None:
                # An unmapped plain value is an ordinary constant input of the task.
                constant = cast(Constant, edge.upstream_task)
                target.add_constant(edge.downstream_task, edge.key, constant.value)
                continue
            target.add_edge(
                edge.upstream_task,
                edge.downstream_task,
                key=edge.key,
                mapped=source.mapped if source is not None else True,
                flattened=edge.flattened or (source is not None and source.flattened),
            )
    for t, values in scratch.constants.items():
        mapped_keys = scratch.mapped_constants.get(t, set())
        for key, value in values.items():
            target.add_constant(t, key, value, mapped=key in mapped_keys)

    # Each task func created without an upstream task of its own waits for (and maps over) every
    # mapped argument: all children line up element by element, whatever each task reads.
    new = set(created)
    for t in created:
        if isinstance(t, Parameter):
            continue
        upstream = target.upstream_tasks(t)
        if upstream & new:
            continue
        for node, info in inputs.items():
            if node in upstream or (info.constant and not info.mapped):
                continue
            target.add_edge(node, t, mapped=info.mapped, flattened=info.flattened)
    return result


__all__ = ["task", "tags", "as_task", "contains_task", "defaults_from_attrs", "pause_task", "apply_map"]
