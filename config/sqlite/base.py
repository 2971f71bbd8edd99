"""SQLite, with this process's write transactions taken in turn.

SQLite runs one write transaction at a time. With ``transaction_mode`` IMMEDIATE every transaction
takes the write lock as it begins, and one that finds it taken waits in SQLite's busy handler,
which sleeps and retries in steps of up to 100 ms: under 16 concurrent writers a transaction could
lose that race for seconds (issue 12: p99 5.7 s, max 8.3 s). Here the threads of one process wait
on a lock of their own instead, woken the moment the transaction before them ends; the busy
timeout still covers other processes (``manage.py`` commands)."""

from __future__ import annotations

import threading
from typing import Any

from django.db.backends.sqlite3 import base

_write_turn = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_write_turn = False

    def _start_transaction_under_autocommit(self) -> None:
        _write_turn.acquire()
        self._holds_write_turn = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._end_write_turn()
            raise

    def _end_write_turn(self) -> None:
        if self._holds_write_turn:
            self._holds_write_turn = False
            _write_turn.release()

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._end_write_turn()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._end_write_turn()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._end_write_turn()
