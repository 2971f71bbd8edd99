"""uvicorn's access log line, formatted without its per-record copies.

uvicorn's ``AccessFormatter`` copies every record twice (once in each of its two ``formatMessage``
layers) before it fills in the line: about a third of the access log's cost, and the access log was
about a quarter of a server process's event-loop CPU (docs/performance.md, "Seventh round"). Without colours
(production: the log is not a terminal) this formatter writes the same line from the record's
arguments directly; with colours it leaves everything to uvicorn. ``tests/serving/test_access_log.py``
compares the two."""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter as UvicornAccessFormatter

# uvicorn's own format for the access line; any other format goes through uvicorn's formatter.
LINE = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'


class AccessFormatter(UvicornAccessFormatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        if self.use_colors or self._fmt != LINE or not isinstance(args, tuple) or len(args) != 5:
            return super().formatMessage(record)
        client_addr, method, full_path, http_version, status_code = args
        level = record.levelname
        return (f'{level}:{" " * (8 - len(level))} {client_addr} - "{method} {full_path} HTTP/{http_version}" '
                f"{self.get_status_code(int(status_code))}")  # type: ignore[call-overload]


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with this formatter for the access log."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"]["()"] = f"{__name__}.AccessFormatter"
    return config
