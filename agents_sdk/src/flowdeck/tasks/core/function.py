"""``FunctionTask``: the task ``@task`` makes from a function."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flowdeck.core.task import Task, _check_run_signature


class FunctionTask(Task):
    """A task whose ``run()`` is ``fn``. Keyword arguments are those of ``Task``; the name defaults
    to the function's name."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, **kwargs: Any) -> None:
        if not callable(fn):
            raise TypeError(f"@task needs a function, not {type(fn).__name__}.")
        _check_run_signature(fn, getattr(fn, "__name__", "task"))
        self.fn = fn
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no introspectable signature
            self._signature = None
        # An instance attribute: calling the function directly keeps the per-run overhead small.
        self.run = fn  # type: ignore[method-assign]
        self.__doc__ = getattr(fn, "__doc__", None)
        super().__init__(name=name if name is not None else getattr(fn, "__name__", "task"), **kwargs)

    def _run_signature(self) -> inspect.Signature:
        if self._signature is None:
            raise TypeError(f"Cannot inspect the arguments of {self.fn!r}; wrap it in a Python function.")
        return self._signature

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("run", None)  # the same object as fn: pickle it once
        state["_logger"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.run = self.fn  # type: ignore[method-assign]


__all__ = ["FunctionTask"]
