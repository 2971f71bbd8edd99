"""config/postgresql: a pooled connection is handed out without a round trip when it is healthy, and a
connection the server ended (as after a restart) is still replaced before anyone gets it. Against
the real PostgreSQL; backends are ended with pg_terminate_backend, which closes them the way a
restart does (the server sends its reason and closes the socket).

Once the pool could not give a connection in time, requests wait only briefly for one until one is
had again (G2: during an outage requests queue behind one another's waits); the fault suite's
``test_db_outage.py`` shows it over HTTP with a real PostgreSQL stopped and started."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from psycopg_pool import PoolTimeout

from config.postgresql.base import OUTAGE_WAIT_SECONDS, DatabaseWrapper, FailFastGetconn, check_connection, looks_dead
from tests.sdk.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _conninfo() -> dict[str, Any]:
    params = connection.get_connection_params()
    return {k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")}


def _terminate(*pids: int) -> None:
    with psycopg.connect(**_conninfo(), autocommit=True) as admin:
        for pid in pids:
            assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_healthy_idle_connection_passes_without_asking_the_server_and_an_ended_one_fails():
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        assert looks_dead(conn) is False
        check_connection(conn)  # quietly
        # A query's reply not yet read leaves the socket readable: the check then asks the server.
        conn.pgconn.send_query(b"SELECT 1")
        _until(lambda: looks_dead(conn))
        while conn.pgconn.get_result() is not None:
            pass
        assert looks_dead(conn) is False

        _terminate(conn.info.backend_pid)
        _until(lambda: looks_dead(conn))
        with pytest.raises(psycopg.OperationalError):
            check_connection(conn)


@pytest.fixture
def pooled() -> Iterator[DatabaseWrapper]:
    """Django's connection wrapper with this project's backend, pooled and checked as in production."""
    settings_dict = {**connections["default"].settings_dict, "CONN_HEALTH_CHECKS": True,
                     "OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 5}}}
    wrapper = DatabaseWrapper(settings_dict, alias="pool-check-for-test")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()


def _backend_pid(wrapper: DatabaseWrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    wrapper.close()  # back to the pool
    return pid


def test_after_the_server_ends_a_pooled_connection_the_next_request_gets_a_working_one(pooled: DatabaseWrapper):
    getconn = pooled.pool.getconn
    assert isinstance(getconn, FailFastGetconn) and getconn.check and pooled.pool._check is None
    first = _backend_pid(pooled)
    assert _backend_pid(pooled) == first  # the same pooled connection, reused

    _terminate(first)
    (idle,) = list(pooled.pool._pool)
    _until(lambda: looks_dead(idle))
    # when: the next use takes a connection from the pool
    second = _backend_pid(pooled)
    # then: it works, on a new backend: the dead one was found by the check and replaced
    assert second != first


def test_after_a_restart_ends_every_idle_connection_the_next_request_gets_a_working_one_at_once():
    """After a restart every idle pooled connection is dead. psycopg_pool's own check loop slept 1 s,
    then 2 s… before each further dead one, and with three the request timed out (503) though the
    database was back; each dead one is now handed back at once and the next tried."""
    settings_dict = {**connections["default"].settings_dict, "CONN_HEALTH_CHECKS": True,
                     "OPTIONS": {"pool": {"min_size": 1, "max_size": 8, "timeout": 2}}}
    wrapper = DatabaseWrapper(settings_dict, alias="restart-for-test")
    pool = wrapper.pool
    pool.open(wait=True)
    try:
        # given: six idle pooled connections, all ended by the server
        taken = [pool.getconn() for _ in range(6)]
        pids = {conn.info.backend_pid for conn in taken}
        for conn in taken:
            pool.putconn(conn)
        _terminate(*pids)
        idle = list(pool._pool)
        assert len(idle) == 6
        for conn in idle:
            _until(lambda conn=conn: looks_dead(conn))
        # when: a request takes a connection
        started = time.monotonic()
        conn = pool.getconn()
        took = time.monotonic() - started
        # then: a working one, on a new backend, well within a second
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] not in pids
        assert took < 0.5, took
        pool.putconn(conn)
    finally:
        wrapper.close_pool()


def _timed_getconn(getconn: FailFastGetconn) -> float:
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        getconn()
    return time.monotonic() - started


def test_once_no_connection_came_in_time_each_request_waits_briefly():
    # given: a pool whose database cannot be reached (nothing listens on its port)
    settings_dict = {**connections["default"].settings_dict, "PORT": str(free_port()),
                     "OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 1.5}}}
    unreachable = DatabaseWrapper(settings_dict, alias="outage-for-test")
    unreachable.pool.open()
    try:
        getconn = unreachable.pool.getconn
        assert isinstance(getconn, FailFastGetconn) and getconn.down_since is None
        # when: the first request asks, it waits the pool's whole timeout, and the database is taken as down
        assert _timed_getconn(getconn) >= 1.5
        assert getconn.down_since is not None
        # then: the next ones wait briefly
        for _ in range(3):
            assert _timed_getconn(getconn) < OUTAGE_WAIT_SECONDS + 0.2
    finally:
        unreachable.close_pool()


def test_the_first_connection_had_again_restores_the_whole_wait():
    # given: a pool of one connection on the real database, taken
    settings_dict = {**connections["default"].settings_dict,
                     "OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 1.0}}}
    wrapper = DatabaseWrapper(settings_dict, alias="outage-over-for-test")
    wrapper.pool.open()
    try:
        getconn = wrapper.pool.getconn
        taken = getconn()
        assert _timed_getconn(getconn) >= 1.0
        assert _timed_getconn(getconn) < OUTAGE_WAIT_SECONDS + 0.2
        # when: a connection is had again
        wrapper.pool.putconn(taken)
        again = getconn()
        assert again.execute("SELECT 1").fetchone() == (1,)
        # then: the outage is over, and the next wait is the pool's whole timeout again
        assert getconn.down_since is None
        assert _timed_getconn(getconn) >= 1.0
        wrapper.pool.putconn(again)
    finally:
        wrapper.close_pool()
