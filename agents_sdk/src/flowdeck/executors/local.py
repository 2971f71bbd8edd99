"""The default executor: runs each function right away, in the calling thread
(Prefect 1's ``prefect.executors.LocalExecutor``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowdeck.executors.base import Executor, call_in_context

_CONTAINERS = (list, tuple, set, frozenset)


class Failure:
    """What :meth:`LocalExecutor.submit` returns when the function raised: ``wait`` raises
    ``exception`` (as a remote executor's future would), and a call given it as an argument does not
    run and fails the same way."""

    __slots__ = ("exception",)
    # Until some call has failed no argument can be a Failure, and submit/wait skip looking for one.
    seen = False

    def __init__(self, exception: Exception) -> None:
        self.exception = exception
        Failure.seen = True

    def __repr__(self) -> str:
        return f"<Failure: {self.exception!r}>"


def first_failure(values: Any) -> Failure | None:
    """The first :class:`Failure` inside ``values`` (lists, tuples, sets, dict values), or None."""
    stack = [values]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is Failure:
            return value  # type: ignore[no-any-return]
        if kind is dict or isinstance(value, dict):
            stack.extend(value.values())
        elif kind in _CONTAINERS or isinstance(value, _CONTAINERS):
            stack.extend(value)
    return None


class LocalExecutor(Executor):
    """Runs functions one after the other as they are submitted, in the calling thread: ``submit``
    returns the value itself and ``wait`` returns what it is given. It needs no ``start()`` and costs
    next to nothing per call (the runner of a 1,000-task flow calls it 1,000 times).

    Like the other executors, a function's exception comes out of ``wait``: ``submit`` then returns
    a :class:`Failure` in place of the value."""

    runs_in_process = True

    def submit(self, fn: Callable[..., Any], /, *args: Any, extra_context: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` now and return its value (a :class:`Failure` if it raised)."""
        if Failure.seen:
            failed = first_failure(args) or (first_failure(kwargs) if kwargs else None)
            if failed is not None:
                return failed
        try:
            if extra_context:
                return call_in_context(fn, args, kwargs, extra_context)
            return fn(*args, **kwargs)
        except Exception as exc:
            return Failure(exc)

    def wait(self, futures: Any) -> Any:
        """The values are already there: return ``futures``, or raise the exception of a failed call
        found in it."""
        failed = first_failure(futures) if Failure.seen else None
        if failed is not None:
            raise failed.exception
        return futures
