"""The executor interface the FlowRunner drives (Prefect 1's ``prefect.executors.base.Executor``).

An executor runs functions, maybe elsewhere: ``submit`` returns a future-like handle (or, for the
local executor, the value itself), arguments may be handles from earlier submissions (also inside
lists, tuples, sets and dicts) and are resolved to their values before the function runs, and
``wait`` turns a handle, or any nesting of them, into values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Executor:
    """Base class of executors. Use inside ``with executor.start():``."""

    #: Whether submitted functions run in this process (the FlowRunner then streams task states live).
    runs_in_process = False

    def __repr__(self) -> str:
        return f"<Executor: {type(self).__name__}>"

    @contextmanager
    def start(self) -> Iterator[None]:
        """Set up what the executor needs (pools, clusters) for the block, and tear it down after."""
        yield

    def submit(self, fn: Callable[..., Any], /, *args: Any, extra_context: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)``, with ``extra_context`` set in ``flowdeck.context`` around the call
        where it runs; return a future-like handle for its result."""
        raise NotImplementedError

    def wait(self, futures: Any) -> Any:
        """Resolve ``futures`` (a handle from :meth:`submit`, or lists/tuples/sets/dicts of them, nested)
        to their values. Raises the exception of the first failed call it meets."""
        raise NotImplementedError


def map_leaves(value: Any, is_leaf: Callable[[Any], bool], convert: Callable[[Any], Any]) -> Any:
    """``value`` with every leaf (``is_leaf``) inside lists, tuples, sets, frozensets and dicts
    replaced by ``convert(leaf)``; containers without leaves come back as they are (no copy)."""
    if is_leaf(value):
        return convert(value)
    kind = type(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [map_leaves(item, is_leaf, convert) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
            return kind(*items)
        return kind(items)
    if isinstance(value, dict):
        pairs = {key: map_leaves(item, is_leaf, convert) for key, item in value.items()}
        if all(pairs[key] is item for key, item in value.items()):
            return value
        if kind is dict:
            return pairs
        rebuilt = kind()
        rebuilt.update(pairs)
        return rebuilt
    return value


def find_leaves(value: Any, is_leaf: Callable[[Any], bool], found: list[Any] | None = None) -> list[Any]:
    """Every leaf (``is_leaf``) inside ``value``, looking into lists, tuples, sets and dict values."""
    if found is None:
        found = []
    if is_leaf(value):
        found.append(value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            find_leaves(item, is_leaf, found)
    elif isinstance(value, dict):
        for item in value.values():
            find_leaves(item, is_leaf, found)
    return found


_CONTEXT: list[Any] = []


def _flowdeck_context() -> Any:
    # Imported on first use (and then cached: this is on the hot path of local runs), so that the
    # executors import cheaply in worker processes.
    if not _CONTEXT:
        from flowdeck.context import context

        _CONTEXT.append(context)
    return _CONTEXT[0]


def call_in_context(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                    extra_context: dict[str, Any] | None) -> Any:
    """``fn(*args, **kwargs)`` with ``extra_context`` layered over ``flowdeck.context`` (of the thread
    that runs it) for the call."""
    if not extra_context:
        return fn(*args, **kwargs)
    context = _flowdeck_context()
    data = context.to_dict()
    data.update(extra_context)
    previous = context.replace(data)
    try:
        return fn(*args, **kwargs)
    finally:
        context.replace(previous)
