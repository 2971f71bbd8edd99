"""Views of the platform itself: health probes and the error pages.

``/healthz`` is liveness (the process answers; it touches neither the database nor Redis, so an
orchestrator does not restart healthy web processes because PostgreSQL is down). ``/readyz`` is
readiness: the database answers, no migration is unapplied, and Redis (when configured) answers.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from .errors import DatabaseUnavailable, error_body, error_response, is_database_unavailable

#: Paths whose clients read JSON; everything else is a page for people.
API_PREFIXES = ("/api/", "/graphql", "/_allauth/")
#: The database check's statement timeout, and the Redis check's connect/read timeout (seconds).
READY_CHECK_TIMEOUT_SECONDS = 2


@never_cache
@transaction.non_atomic_requests
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and serving. Deliberately checks nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@transaction.non_atomic_requests
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when this process can serve requests, 503 (with ``Retry-After``) naming what
    is down otherwise. Redis down is reported but leaves the process ready: REST and claims keep
    working without it, only live updates degrade (G3)."""
    checks: dict[str, dict[str, Any]] = {"database": _check_database()}
    if checks["database"]["ok"]:
        checks["migrations"] = _check_migrations()
    else:
        checks["migrations"] = {"ok": False, "error": "not checked: the database is down"}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis()
    down = [name for name in ("database", "migrations") if not checks[name]["ok"]]
    if not down:
        degraded = not checks.get("redis", {"ok": True})["ok"]
        return JsonResponse({"status": "degraded" if degraded else "ok", "checks": checks})
    if not checks["database"]["ok"]:
        code, message = DatabaseUnavailable.code, "The database cannot be reached."
    else:
        code, message = "migrations_pending", "The database has unapplied migrations: run `manage.py migrate`."
    body = {"status": "unavailable", "checks": checks, **error_body(code, message, {"down": down})}
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(settings.DATABASE_RETRY_AFTER_SECONDS)
    return response


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = check()
    except Exception as exc:  # a probe reports every failure; it must not fail itself
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def _check_database() -> dict[str, Any]:
    def check() -> dict[str, Any]:
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # set_config, not SET: with server-side binding SET takes no parameters.
                cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                               [str(READY_CHECK_TIMEOUT_SECONDS * 1000)])
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True}

    result = _timed(check)
    if not result["ok"]:
        # A connection that failed mid-way must not go back to the pool for the next request.
        connection.close_if_unusable_or_obsolete()
    return result


def _check_migrations() -> dict[str, Any]:
    def check() -> dict[str, Any]:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        unapplied = [f"{migration.app_label}.{migration.name}" for migration, backwards in plan if not backwards]
        if unapplied:
            return {"ok": False, "unapplied": unapplied[:20], "unapplied_count": len(unapplied)}
        return {"ok": True}

    return _timed(check)


_redis_clients: dict[str, Any] = {}


def _check_redis() -> dict[str, Any]:
    def check() -> dict[str, Any]:
        url = settings.REDIS_URL
        client = _redis_clients.get(url)
        if client is None:
            client = _redis_clients.setdefault(url, redis.Redis.from_url(
                url, socket_connect_timeout=READY_CHECK_TIMEOUT_SECONDS, socket_timeout=READY_CHECK_TIMEOUT_SECONDS,
            ))
        client.ping()
        return {"ok": True}

    return _timed(check)


@csrf_exempt
def not_found_json(request: HttpRequest) -> JsonResponse:
    return error_response("not_found", "No API endpoint at this path.", 404)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with ``Retry-After`` while the database cannot be reached (G2): the one error shape for
    API clients (the SDK retries it), a plain page for people."""
    retry_after = settings.DATABASE_RETRY_AFTER_SECONDS
    if request.path.startswith(API_PREFIXES):
        response: HttpResponse = error_response(
            DatabaseUnavailable.code,
            f"The database is unavailable right now; retry in {retry_after} seconds.",
            503,
            {"retry_after_seconds": retry_after},
        )
    else:
        response = HttpResponse(
            "Flowdeck cannot reach its database right now. Please retry in a few seconds.",
            status=503,
            content_type="text/plain",
        )
    response["Retry-After"] = str(retry_after)
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """500 in the one error shape for API clients; a plain page for people. A database outage that
    escaped a middleware (rather than a view) still answers 503."""
    if is_database_unavailable(sys.exc_info()[1]):
        return database_unavailable(request)
    if request.path.startswith(API_PREFIXES):
        return error_response(
            "server_error", "Something went wrong on our side; it has been logged. Retry shortly.", 500
        )
    return HttpResponse(
        "Something went wrong on our side. Please retry shortly.", status=500, content_type="text/plain"
    )


#: What a refused CSRF check says on the API, here and in DRF's session authentication.
CSRF_FAILED_MESSAGE = "CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header."


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        return error_response("csrf_failed", CSRF_FAILED_MESSAGE, 403)
    return HttpResponse("CSRF check failed. Reload the page and try again.", status=403, content_type="text/plain")
