"""Schedule adjustments (Prefect 1's ``prefect.schedules.adjustments``): functions that move an event
that passed the filters. Local only, like filters: the Flowdeck server does not evaluate them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Adjustment = Callable[[datetime], datetime]


def _normalised(moment: datetime) -> datetime:
    # Wall-clock arithmetic on an aware datetime can land in a DST gap; a round trip through UTC
    # gives the real instant with the right offset.
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).astimezone(moment.tzinfo)


def add(interval: timedelta) -> Adjustment:
    """Adds ``interval`` (in wall-clock time of the event's zone)."""
    return lambda moment: _normalised(moment + interval)


def next_weekday(dt: datetime) -> datetime:
    """Moves a Saturday or Sunday event to the following Monday at the same wall-clock time."""
    moment = dt
    while moment.weekday() >= 5:
        moment = moment + timedelta(days=1)
    return _normalised(moment)
