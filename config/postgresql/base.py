"""PostgreSQL, with a pooled connection checked without a round trip when nothing suggests it died.

With ``CONN_HEALTH_CHECKS`` Django gives psycopg's pool its stock check, an empty query: one round
trip to the database before every request, about a tenth of a hot-path request's statements
(docs/performance.md, "Fourth round"). The check exists because after PostgreSQL restarts every
pooled connection is dead. A server that ends a connection (a restart, a crash of the postmaster,
``pg_terminate_backend``) sends its reason and closes the socket, so the socket of a dead pooled
connection has something to read; that of a healthy idle one has nothing. :func:`check_connection`
looks at the socket (a local ``poll``, no round trip) and asks the server only when it is readable,
closed or not idle, so a dead connection is still replaced before a request gets it."""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq
from psycopg_pool import ConnectionPool


def looks_dead(conn: Any) -> bool:
    """Whether an idle pooled connection may have been ended by the server (module docstring)."""
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        return True
    if conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return True
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def check_connection(conn: Any) -> None:
    """The pool's check: raises for a dead connection, which the pool then replaces."""
    if looks_dead(conn):
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool
        # Django hands the pool its own check and takes no other; psycopg_pool keeps it in _check.
        if pool is not None and self.settings_dict["CONN_HEALTH_CHECKS"] and pool._check is not check_connection:
            pool._check = check_connection
        return pool
