"""``flowdeck.context``: thread-local, run-scoped values (Prefect 1's ``prefect.context``).

The runners fill it while a flow and its tasks run, with Prefect 1's keys and types: ``flow_name``,
``flow_run_id``, ``parameters``, ``task_key``/``task_slug``, ``task_name``, ``task_full_name``,
``task_tags``, ``map_index`` (``None`` outside a map), ``task_run_count``, ``task_loop_count`` and
``task_loop_result`` (from the first ``LOOP`` on), ``task_run_id`` (under a backend), ``date`` and
``scheduled_start_time`` (pendulum ``DateTime``s in UTC), ``today``, ``yesterday``, ``tomorrow`` and
their ``_nodash`` forms (strings) … and ``logger``; ``checkpointing`` says whether results are
checkpointed when no ``Result`` is configured (set by the flow-run process). Read it anywhere::

    import flowdeck
    flowdeck.context.get("map_index")
    flowdeck.context.logger.info("hello")
    with flowdeck.context(my_key=1):
        ...

Each thread has its own values (a new thread starts empty): the task runner sets them again in
whatever worker thread or process runs the task.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any


class Context(threading.local, MutableMapping[str, Any]):
    """A dict of run-scoped values, per thread, with attribute access.

    ``with context(key=value):`` sets values for the block and restores the previous ones after it.
    """

    def __init__(self, **initial: Any) -> None:
        # Runs once per thread (threading.local semantics): each thread starts with its own dict.
        self.__dict__["_data"] = dict(initial)

    # --- mapping -------------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            if key == "logger":
                return _default_logger()
            if key == "config":
                return _default_config()
            raise

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        if key == "logger" and key not in self._data:
            return _default_logger()
        if key == "config" and key not in self._data:
            return _default_config()
        return self._data.get(key, default)

    # --- attribute access ----------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: map attribute reads to context keys.
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            if name == "logger":
                return _default_logger()
            if name == "config":
                return _default_config()
            raise AttributeError(f"flowdeck.context has no value for {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"<Context: {', '.join(sorted(self._data))}>"

    # --- scoping -------------------------------------------------------------------------------
    @contextmanager
    def __call__(self, *args: MutableMapping[str, Any], **kwargs: Any) -> Iterator[Context]:
        """Set values for the duration of a ``with`` block; the previous values come back after it."""
        previous = self._data
        data = dict(previous)
        for mapping in args:
            data.update(mapping)
        data.update(kwargs)
        self.__dict__["_data"] = data
        try:
            yield self
        finally:
            self.__dict__["_data"] = previous

    def to_dict(self) -> dict[str, Any]:
        """A plain copy of the current thread's values."""
        return dict(self._data)

    def replace(self, data: dict[str, Any]) -> dict[str, Any]:
        """Swap in ``data`` as the whole context (no copy) and return the previous dict.

        The task runner uses this on its hot path instead of ``with context(...)``."""
        previous: dict[str, Any] = self._data
        self.__dict__["_data"] = data
        return previous


def _default_config() -> Any:
    # ``flowdeck.context.config`` is ``flowdeck.config`` (as ``prefect.context.config``).
    from flowdeck.config import config

    return config


def _default_logger() -> Any:
    # Outside a run ``context.logger`` is the ``flowdeck`` logger (the runners set task/flow loggers).
    from flowdeck.utilities.logging import get_logger

    return get_logger()


context = Context()

__all__ = ["Context", "context"]
