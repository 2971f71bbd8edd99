"""PostgreSQL, with a pooled connection checked without a round trip when nothing suggests it died.

With ``CONN_HEALTH_CHECKS`` Django gives psycopg's pool its stock check, an empty query: one round
trip to the database before every request, about a tenth of a hot-path request's statements
(docs/performance.md, "Fourth round"). The check exists because after PostgreSQL restarts every
pooled connection is dead. A server that ends a connection (a restart, a crash of the postmaster,
``pg_terminate_backend``) sends its reason and closes the socket, so the socket of a dead pooled
connection has something to read; that of a healthy idle one has nothing. :func:`check_connection`
looks at the socket (a local ``poll``, no round trip) and asks the server only when it is readable,
closed or not idle, so a dead connection is still replaced before a request gets it.

The check runs in :class:`FailFastGetconn`, not in the pool: psycopg_pool's own loop sleeps 1 s,
then 2 s… before each further connection that fails its check, and after a restart every idle one
has; with three idle connections a request answered 503 after the pool's whole timeout though the
database was back. Here a dead connection is closed and handed back at once, and the next one tried.

While the database is down, every request waits the pool's whole timeout for a connection that will
not come, holding one of the server's few places to run a request meanwhile (``FLOWDECK_WEB_ACTIVE``):
with agents still reporting, a request could queue behind several such waits before its own, and
answer its 503 after twice the timeout or more. :class:`FailFastGetconn` waits briefly instead once a
request has found the database down, until a connection is had again (G2)."""

from __future__ import annotations

import logging
import select
import time
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

logger = logging.getLogger(__name__)

#: How long a request waits for a connection once the database is known to be down. Long enough for
#: a connection the pool is opening as the database comes back; short enough that requests queued
#: behind one another still answer their 503 within a few seconds.
OUTAGE_WAIT_SECONDS = 0.25


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


class FailFastGetconn:
    """A pool's ``getconn`` that checks each connection (``check``: :func:`check_connection`) and
    waits the pool's whole timeout only while the database answers (module docstring).

    A connection that fails its check is closed and handed back, so the pool replaces it, and the
    next one is tried at once. The pool times out only when it could not open a connection (or,
    rarely, when every connection is in use): the database is then taken as down, and each request
    waits :data:`OUTAGE_WAIT_SECONDS` at most, until one gets a connection. The pool keeps trying to
    reconnect in the background meanwhile, so the first request after the database is back gets the
    connection it opened."""

    def __init__(self, pool: ConnectionPool, check: bool) -> None:
        self.pool = pool
        self.check = check
        self.timeout = pool.timeout
        self.down_since: float | None = None  # monotonic time of the first timeout of the outage

    def __call__(self, timeout: float | None = None) -> Any:
        if timeout is None:
            timeout = self.timeout if self.down_since is None else min(self.timeout, OUTAGE_WAIT_SECONDS)
        try:
            conn = self._checked(timeout)
        except PoolTimeout:
            if self.down_since is None:
                self.down_since = time.monotonic()
                logger.warning("No database connection within %.1f s: until one is had, requests wait %.2f s for "
                               "a connection before answering 503", timeout, OUTAGE_WAIT_SECONDS)
            raise
        if self.down_since is not None:
            logger.warning("Database connections again after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None
        return conn

    def _checked(self, timeout: float) -> Any:
        """A connection that passed the check, within ``timeout`` seconds (else PoolTimeout)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PoolTimeout(f"couldn't get a working connection after {timeout:.2f} sec")
            # The class's own method: the instance's is this wrapper.
            conn = type(self.pool).getconn(self.pool, left)
            if not self.check:
                return conn
            try:
                check_connection(conn)
            except Exception:
                conn.close()  # closed: the pool discards it and opens another in the background
                self.pool.putconn(conn)
                continue
            return conn


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool
        if pool is not None and not isinstance(pool.getconn, FailFastGetconn):
            # Django creates the pool and calls its getconn() without a timeout, set once per pool,
            # as the first thread to use it finds it. Django passes its own stock check to the pool,
            # which keeps it in _check; the wrapper checks instead (module docstring).
            pool._check = None
            pool.getconn = FailFastGetconn(pool, check=bool(self.settings_dict["CONN_HEALTH_CHECKS"]))
        return pool
