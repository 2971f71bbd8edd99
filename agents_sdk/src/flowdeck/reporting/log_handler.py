"""A ``logging.Handler`` that ships Python log records to the flow run's logs on the server.

Records carry the task they were logged from (``task_key``/``map_index`` read from
``flowdeck.context``, when the engine has set them). The handler only formats the record and queues
it; the reporter's sender thread does the rest. Records of the HTTP stack and of the reporter itself
are ignored, as is anything logged from the reporter's own threads — otherwise every request sent
would log a line that needs another request.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

IGNORED_LOGGERS = ("httpx", "httpcore", "flowdeck.reporting", "flowdeck.client", "hpack", "urllib3")

LogSink = Callable[[int, float, str, str, "str | None", "int | None"], None]

_context_getter: Callable[[str], Any] | None = None
_context_checked = False
_context_lock = threading.Lock()


def _find_context_getter() -> Callable[[str], Any] | None:
    """``flowdeck.context.get`` when the engine provides it (the package attribute may be the
    context object itself, or the module holding one)."""
    try:
        module = importlib.import_module("flowdeck.context")
    except ImportError:
        return None
    package = sys.modules.get("flowdeck")
    candidates = [getattr(package, "context", None), module, getattr(module, "context", None)]
    for candidate in candidates:
        getter = getattr(candidate, "get", None)
        if callable(getter):
            return getter  # type: ignore[no-any-return]
    return None


def current_task() -> tuple[str | None, int | None]:
    """``(task_key, map_index)`` of the task running in this thread, or ``(None, None)``."""
    global _context_getter, _context_checked
    if not _context_checked:
        with _context_lock:
            if not _context_checked:
                _context_getter = _find_context_getter()
                _context_checked = True
    getter = _context_getter
    if getter is None:
        return None, None
    try:
        task_key = getter("task_key")
        map_index = getter("map_index")
    except Exception:  # a context without these keys must never break logging
        return None, None
    key = task_key if isinstance(task_key, str) and task_key else None
    index = map_index if isinstance(map_index, int) and not isinstance(map_index, bool) else None
    return key, index


class ReporterLogHandler(logging.Handler):
    """Queues each record as a log line of the flow run (see :class:`flowdeck.reporting.RunReporter`)."""

    def __init__(self, sink: LogSink, ignored_threads: set[int], level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._sink = sink
        self._ignored_threads = ignored_threads

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(IGNORED_LOGGERS) or threading.get_ident() in self._ignored_threads:
            return
        try:
            message = self.format(record)
        except Exception:
            self.handleError(record)
            return
        task_key, map_index = current_task()
        self._sink(record.levelno, record.created, record.name, message, task_key, map_index)
