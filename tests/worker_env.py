"""Loaded with ``-p tests.worker_env`` when the suite runs on several pytest-xdist workers
(scripts/test). Each worker gets a Redis database of its own: the autouse ``cache.clear()`` is a
FLUSHDB, and one worker's would wipe another's rate-limit counters, key-cache generations and
Celery queues mid-test. PostgreSQL needs nothing here: pytest-django already gives each worker its
own test database (``test_<name>_gw0``…).

It must run before pytest-django reads the settings (they read ``REDIS_URL`` once, at import),
hence a plugin imported while the command line is parsed rather than a conftest. Server, agent and
Celery subprocesses the tests start inherit the changed environment."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

REDIS_DATABASES = 16  # redis-server's default number of databases


def worker_redis_url(url: str, worker: str) -> str:
    """``url`` moved to the database after its own for worker ``gwN`` (N + 1 on from it)."""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    number = int(worker.removeprefix("gw"))
    return urlunsplit(parts._replace(path=f"/{(base + 1 + number) % REDIS_DATABASES}"))


_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and os.environ.get("REDIS_URL"):
    _shared = os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = worker_redis_url(_shared, _worker)
    if os.environ.get("CELERY_BROKER_URL") == _shared:
        os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]
