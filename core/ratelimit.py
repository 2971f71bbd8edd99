"""Fixed-window rate limits on atomic cache counters (B5).

``cache.add`` creates the window's counter and ``cache.incr`` bumps it; both are single atomic
commands on Redis, so fifty concurrent attempts cannot all read "4 so far" and slip through.
With Redis down the limits fail open (logged): REST and claims keep working (G3), and a key
is still 192 random bits.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)


def window_key(scope: str, key: str, window_seconds: int) -> str:
    return f"rl:{scope}:{key}:{int(time.time() // window_seconds)}"


def hit(scope: str, key: str, *, limit: int, window_seconds: int) -> tuple[bool, int]:
    """Count one attempt; return (allowed, seconds until the window resets)."""
    cache_key = window_key(scope, key, window_seconds)
    retry_after = window_seconds - int(time.time()) % window_seconds
    try:
        cache.add(cache_key, 0, timeout=window_seconds + 5)
        try:
            count = cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.add(cache_key, 1, timeout=window_seconds + 5)
            count = 1
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: fail open rather than fail every request
        logger.warning("rate limit %s not counted: the cache is unavailable", scope, exc_info=True)
        return True, retry_after
    return count <= limit, retry_after


def client_ip(request) -> str | None:
    """The client's address, for every per-IP limit and the audit log: the one place it is read.
    The server sets ``REMOTE_ADDR`` from ``X-Forwarded-For`` only behind the trusted proxies
    (config/serve.py, ``FLOWDECK_TRUSTED_PROXIES``), so a client cannot choose it."""
    return request.META.get("REMOTE_ADDR") or None
