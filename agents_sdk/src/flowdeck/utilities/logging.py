"""Loggers of the ``flowdeck`` hierarchy (Prefect 1's ``prefect.utilities.logging``).

``get_logger()`` is the ``flowdeck`` logger; ``get_logger("name")`` is ``flowdeck.name``. The first call
gives the ``flowdeck`` logger one stream handler (stderr) so local runs show something, at the level
of ``FLOWDECK__LOGGING__LEVEL`` (Prefect 1's ``PREFECT__LOGGING__LEVEL``; the older
``FLOWDECK_LOGGING_LEVEL`` still works; default INFO). Records still propagate to the root logger, so a handler
installed there (such as the agent's log shipper) sees every record, including those of plain
``logging.getLogger(__name__)`` loggers used inside tasks.
"""

from __future__ import annotations

import logging
import os
import threading

ROOT_NAME = "flowdeck"
DEFAULT_FORMAT = "[%(asctime)s] %(levelname)s - %(name)s | %(message)s"

_configured = False
_lock = threading.Lock()


def _configure_root() -> logging.Logger:
    global _configured
    root = logging.getLogger(ROOT_NAME)
    with _lock:
        if _configured:
            return root
        _configured = True
        root.setLevel(configured_level())
        if os.environ.get("FLOWDECK_LOGGING_STDERR", "1") not in ("0", "false", "False"):
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(DEFAULT_FORMAT))
            handler.set_name("flowdeck-stderr")
            root.addHandler(handler)
    return root


def configured_level() -> int:
    """The level the environment asks for (``FLOWDECK__LOGGING__LEVEL``, then ``FLOWDECK_LOGGING_LEVEL``;
    INFO when neither is set or the name is unknown)."""
    level_name = os.environ.get("FLOWDECK__LOGGING__LEVEL") or os.environ.get("FLOWDECK_LOGGING_LEVEL") or "INFO"
    level = logging.getLevelName(level_name.strip().upper())
    return level if isinstance(level, int) else logging.INFO


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``flowdeck`` logger, or its child ``flowdeck.<name>``."""
    root = _configure_root()
    if not name:
        return root
    return root.getChild(name)


__all__ = ["get_logger", "configured_level", "ROOT_NAME"]
