"""Health probes and the database-outage answer (G2).

``/healthz`` is liveness: it answers while the database is down. ``/readyz`` is readiness: the
database, unapplied migrations and Redis. A request that cannot reach the database answers 503
with ``Retry-After`` within seconds, in the one error shape for API clients and as a plain page for
people; the fault suite (``tests/faults/test_db_outage.py``) stops and restarts a real PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.db import OperationalError, ProgrammingError, connection, connections, transaction
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from accounts import keys
from core.errors import is_database_unavailable
from tests.sdk.conftest import LiveServer, free_port

pytestmark = pytest.mark.django_db

#: G2: a request that cannot reach the database answers within this many seconds.
OUTAGE_ANSWER_SECONDS = 3.0


def test_healthz_answers_without_touching_the_database(client, django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_checks_the_database_the_migrations_and_redis(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True, "migrations": True, "redis": True,
    }


def test_readyz_with_an_unapplied_migration_is_not_ready_and_names_it(client) -> None:
    app_label, name = sorted(MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes())[0]
    # The database forgets one migration (this test's transaction is rolled back afterwards).
    MigrationRecorder(connection).record_unapplied(app_label, name)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["migrations"]["ok"] is False
    assert f"{app_label}.{name}" in body["checks"]["migrations"]["unapplied"]
    assert body["error"]["code"] == "migrations_pending"
    assert body["error"]["details"] == {"down": ["migrations"]}


def test_readyz_reports_redis_down_but_stays_ready(client, settings) -> None:
    """G3: without Redis, REST and claims keep working, so the process stays in rotation."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["ok"] is False
    assert "Connection" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


# --- which errors mean "the database is not there" ------------------------------------------------


@pytest.fixture
def unreachable_database() -> Iterator[DatabaseWrapper]:
    """A connection to a port where no PostgreSQL listens, pooled as in production."""
    settings_dict = {
        **connections["default"].settings_dict,
        "PORT": str(free_port()),
        "OPTIONS": {"connect_timeout": 2, "pool": {"min_size": 1, "max_size": 1, "timeout": 0.5}},
    }
    wrapper = DatabaseWrapper(settings_dict, alias="unreachable-for-test")
    yield wrapper
    wrapper.close_pool()


def test_a_refused_connection_or_an_empty_pool_means_the_database_is_unavailable(
    unreachable_database: DatabaseWrapper,
) -> None:
    started = time.monotonic()
    with pytest.raises(OperationalError) as refused:
        unreachable_database.ensure_connection()
    assert time.monotonic() - started < 2
    assert "couldn't get a connection" in str(refused.value)  # psycopg_pool's PoolTimeout, wrapped
    assert is_database_unavailable(refused.value)


def test_a_cancelled_statement_or_a_bad_query_is_not_an_outage() -> None:
    with pytest.raises(OperationalError) as cancelled, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1")
        cursor.execute("SELECT pg_sleep(1)")
    assert not is_database_unavailable(cancelled.value)
    with pytest.raises(ProgrammingError) as bad, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert not is_database_unavailable(bad.value)
    assert not is_database_unavailable(ValueError("not a database error"))


# --- a real server whose database is unreachable --------------------------------------------------


class _ServerWithoutDatabase(LiveServer):
    def env(self) -> dict[str, str]:
        env = super().env()
        env["DATABASE_URL"] = f"postgres://flowdeck_app@127.0.0.1:{free_port()}/flowdeck"
        return env


@pytest.fixture(scope="module")
def server_without_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _ServerWithoutDatabase(periodic_every=None, log_dir=Path(tmp_path_factory.mktemp("no-db-server")))
    server.start()  # waits for /healthz, which needs no database
    yield server.url
    server.stop()


def _timed_get(url: str, **kwargs: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.get(url, timeout=15, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


@pytest.mark.parametrize("path", [
    "/api/v1/workspaces/acme/flows/",
    "/graphql?query=%7B__typename%7D",
    "/_allauth/browser/v1/auth/session",
])
def test_api_requests_answer_503_with_retry_after_quickly(server_without_database: str, path: str) -> None:
    headers = {"Authorization": f"Bearer {keys.generate('user').secret}"}
    response, took = _timed_get(server_without_database + path, headers=headers)
    assert response.status_code == 503, response.text
    assert took < OUTAGE_ANSWER_SECONDS
    assert int(response.headers["Retry-After"]) > 0
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "retry" in error["message"].lower()


def test_pages_for_people_answer_a_plain_503(server_without_database: str) -> None:
    response, took = _timed_get(server_without_database + "/runs")
    assert response.status_code == 503
    assert took < OUTAGE_ANSWER_SECONDS
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "database" in response.text and "retry" in response.text
    assert int(response.headers["Retry-After"]) > 0


def test_probes_tell_liveness_from_readiness(server_without_database: str) -> None:
    live, took = _timed_get(server_without_database + "/healthz")
    assert live.status_code == 200 and took < 1
    ready, took = _timed_get(server_without_database + "/readyz")
    assert ready.status_code == 503
    assert took < OUTAGE_ANSWER_SECONDS
    assert int(ready.headers["Retry-After"]) > 0
    body = ready.json()
    assert body["checks"]["database"]["ok"] is False
    assert body["error"]["code"] == "database_unavailable"
    assert "database" in body["error"]["details"]["down"]
