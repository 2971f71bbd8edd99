"""When to try a request again, and how long to wait first."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Beyond this a Retry-After is not waited out inside one call: the caller gets RateLimitedError /
# ServerUnavailableError with the delay and decides (an agent keeps its batch, a CLI says so).
MAX_RETRY_AFTER_SECONDS = 60.0


def backoff_delay(retry_number: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ``base * 2**n`` capped at ``cap``, then a random point in its
    upper half, so many clients retrying at once spread out instead of arriving together."""
    ceiling = min(cap, base * (2.0 ** max(0, retry_number)))
    fraction = rng.random() if rng is not None else random.random()  # noqa: S311 - jitter, not a secret
    return ceiling * (0.5 + 0.5 * fraction)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
