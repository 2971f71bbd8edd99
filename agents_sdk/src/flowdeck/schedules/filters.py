"""Schedule filters (Prefect 1's ``prefect.schedules.filters``): functions of a datetime that say
whether a clock's event is kept. They see the event in its clock's time zone.

Filters run locally only: a schedule that uses them cannot be registered with the Flowdeck server
(express the rule as a cron clock instead, e.g. ``0 9 * * 1-5`` for weekdays at 9:00)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta

Filter = Callable[[datetime], bool]


def on_datetime(dt: datetime) -> Filter:
    """Keeps only the event at exactly ``dt``."""
    return lambda moment: moment == dt


def on_date(month: int, day: int) -> Filter:
    """Keeps events on the given month and day, any year."""
    return lambda moment: (moment.month, moment.day) == (month, day)


def at_time(t: time) -> Filter:
    """Keeps events at the wall-clock time ``t``."""
    return lambda moment: moment.time() == t


def between_datetimes(start: datetime, end: datetime) -> Filter:
    """Keeps events from ``start`` to ``end``, both inclusive."""
    return lambda moment: start <= moment <= end


def between_times(start: time, end: time) -> Filter:
    """Keeps events whose wall-clock time is between ``start`` and ``end`` (inclusive); when ``end``
    is before ``start`` the window wraps past midnight."""
    if start <= end:
        return lambda moment: start <= moment.time() <= end
    return lambda moment: moment.time() >= start or moment.time() <= end


def between_dates(start_month: int, start_day: int, end_month: int, end_day: int) -> Filter:
    """Keeps events from one month/day to another (inclusive) in every year; wraps past new year when
    the end comes before the start."""
    first, last = (start_month, start_day), (end_month, end_day)
    if first <= last:
        return lambda moment: first <= (moment.month, moment.day) <= last
    return lambda moment: (moment.month, moment.day) >= first or (moment.month, moment.day) <= last


def is_weekday(dt: datetime) -> bool:
    """Monday to Friday."""
    return dt.weekday() < 5


def is_weekend(dt: datetime) -> bool:
    """Saturday and Sunday."""
    return dt.weekday() >= 5


def is_month_start(dt: datetime) -> bool:
    """The first day of a month."""
    return dt.day == 1


def is_month_end(dt: datetime) -> bool:
    """The last day of a month."""
    return (dt.date() + timedelta(days=1)).month != dt.month


def is_day_of_week(day_of_week: int) -> Filter:
    """Keeps events on one day of the week: 0 is Monday, 6 is Sunday (``datetime.weekday()``)."""
    return lambda moment: moment.weekday() == day_of_week
