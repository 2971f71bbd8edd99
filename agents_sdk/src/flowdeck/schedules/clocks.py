"""Clocks emit the candidate times of a schedule (Prefect 1's ``prefect.schedules.clocks``).

Every clock lives in an IANA time zone: the ``timezone=`` argument, else the zone of an aware
``start_date``, else UTC. Naive dates are read as wall-clock times in that zone. The times a clock emits
are exactly those the Flowdeck server computes for the same clock once registered:

- :class:`IntervalClock`: ``start_date + k * interval``. An interval of whole days is added in local
  wall-clock days, so a daily clock keeps its time of day across DST; a local time that does not exist
  that day moves forward by the gap, an ambiguous one fires once (its first occurrence). Any other
  interval is added in elapsed time: an hourly clock fires every 60 minutes, DST or not.
- :class:`CronClock`: the cron expression matched against local wall-clock times; a local time that
  does not exist (spring forward) is skipped, an ambiguous one (fall back) fires once, first occurrence.

``start_date`` and ``end_date`` are inclusive bounds; ``events(after)`` yields times strictly after
``after``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from flowdeck.schedules.cron import CronExpression
from flowdeck.schedules.zones import (
    UTC_ZONE,
    aware,
    local_naive,
    resolve_shifting_gaps,
    resolve_skipping_gaps,
    zone_name,
    zone_of,
)

# Prefect 1's anchor for interval clocks without a start date.
DEFAULT_INTERVAL_START = datetime(2019, 1, 1)
# The server's scheduler ticks every 10 s, and schedules are stored in whole seconds.
MIN_SERVER_INTERVAL = timedelta(seconds=10)
MAX_SERVER_INTERVAL = timedelta(days=366)
_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


class ClockEvent:
    """One time a clock fires, with the parameter values and labels of the run it would create.

    Events compare (and sort) by the instant of ``start_time``; an event equals a datetime at the same
    instant."""

    __slots__ = ("labels", "parameter_defaults", "start_time")

    def __init__(self, start_time: datetime, parameter_defaults: dict[str, Any] | None = None,
                 labels: list[str] | None = None) -> None:
        self.start_time = start_time
        self.parameter_defaults: dict[str, Any] = dict(parameter_defaults or {})
        self.labels: list[str] = list(labels or [])

    def __repr__(self) -> str:
        return f"ClockEvent({self.start_time.isoformat()}, parameter_defaults={self.parameter_defaults!r})"

    @property
    def instant(self) -> datetime:
        """``start_time`` in UTC (what comparisons use: see :func:`_utc`)."""
        return _utc(self.start_time)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, datetime):
            return self.instant == _utc(other)
        if isinstance(other, ClockEvent):
            return (self.instant, self.parameter_defaults, self.labels) == (
                other.instant, other.parameter_defaults, other.labels)
        return NotImplemented

    def __lt__(self, other: ClockEvent | datetime) -> bool:
        return self.instant < (other.instant if isinstance(other, ClockEvent) else _utc(other))

    def __gt__(self, other: ClockEvent | datetime) -> bool:
        return self.instant > (other.instant if isinstance(other, ClockEvent) else _utc(other))

    def __hash__(self) -> int:
        return hash(self.instant)


def _utc(moment: datetime) -> datetime:
    # Aware datetimes of one zone compare by wall time, ignoring ``fold``, and an ambiguous local time
    # never equals a time of another zone (PEP 495): instants are compared in UTC. Naive ones are UTC.
    return aware(moment, UTC_ZONE).astimezone(UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Base class of clocks: a time zone, optional inclusive ``start_date``/``end_date``, and the
    parameter values (``parameter_defaults``) and ``labels`` of the runs it creates."""

    kind = ""

    def __init__(
        self,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        parameter_defaults: dict[str, Any] | None = None,
        labels: list[str] | None = None,
        *,
        timezone: str | tzinfo | None = None,
    ) -> None:
        if timezone is not None:
            self.zone = zone_of(timezone)
        elif start_date is not None and start_date.tzinfo is not None:
            self.zone = zone_of(start_date.tzinfo)
        else:
            self.zone = UTC_ZONE
        self.start_date = self._in_zone(start_date, "start_date")
        self.end_date = self._in_zone(end_date, "end_date")
        if self.start_date is not None and self.end_date is not None and _utc(self.end_date) < _utc(self.start_date):
            raise ValueError(f"The clock's end_date ({self.end_date.isoformat()}) is before its start_date "
                             f"({self.start_date.isoformat()}).")
        if parameter_defaults is not None and not isinstance(parameter_defaults, dict):
            raise TypeError("parameter_defaults must be a dict of parameter name → value.")
        self.parameter_defaults: dict[str, Any] = dict(parameter_defaults or {})
        self.labels: list[str] = list(labels or [])

    def _in_zone(self, value: datetime | None, name: str) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"{name} must be a datetime, not {type(value).__name__}.")
        return aware(value, self.zone).astimezone(self.zone)

    @property
    def timezone(self) -> str:
        """The IANA name of the clock's time zone."""
        return zone_name(self.zone)

    def _times(self, lower: datetime) -> Iterator[datetime]:
        """Candidate fire times in order as aware UTC datetimes, starting at or a little before the
        aware ``lower``; the caller drops those before it."""
        raise NotImplementedError

    def times(self, after: datetime, *, inclusive: bool = False, until: datetime | None = None) -> Iterator[datetime]:
        """Fire times after ``after`` (``after`` itself too when ``inclusive``) and up to ``until`` and
        the end date, within the clock's start date, as aware datetimes in the clock's time zone."""
        # Everything is compared in UTC: aware datetimes sharing a zone compare by wall time and
        # ignore ``fold``, so the two 02:30s of an autumn night would look equal.
        lower = aware(after, UTC_ZONE).astimezone(UTC)
        if not inclusive:
            lower += _ONE_MICROSECOND
        if self.start_date is not None:
            lower = max(lower, self.start_date.astimezone(UTC))
        upper = None if self.end_date is None else self.end_date.astimezone(UTC)
        if until is not None:
            until = aware(until, UTC_ZONE).astimezone(UTC)
            upper = until if upper is None else min(upper, until)
        if upper is not None and upper < lower:
            return
        previous: datetime | None = None
        for moment in self._times(lower):
            if upper is not None and moment > upper:
                return
            if moment < lower or moment == previous:
                continue
            previous = moment
            yield moment.astimezone(self.zone)

    def events(self, after: datetime | None = None) -> Iterator[ClockEvent]:
        """The clock's events strictly after ``after`` (default: now), in order."""
        for moment in self.times(_utc_now() if after is None else after):
            yield ClockEvent(moment, self.parameter_defaults, self.labels)

    def _server_fields(self) -> dict[str, Any]:
        raise ValueError(f"A {type(self).__name__} cannot be registered with the Flowdeck server: "
                         "use an IntervalClock or a CronClock.")

    def serialize(self) -> dict[str, Any]:
        """The clock as the Flowdeck server registers it (one entry of ``schedule["clocks"]``).

        Raises ValueError when the server cannot evaluate the clock as it runs locally."""
        fields = {"kind": self.kind, **self._server_fields(), "timezone": self.timezone,
                  "start_date": _iso(self.start_date), "end_date": _iso(self.end_date),
                  "parameters": dict(self.parameter_defaults)}
        if self.labels:
            warnings.warn(f"Clock labels {self.labels} are not stored by the Flowdeck server: runs it creates from "
                          "this schedule get the flow's labels.", UserWarning, stacklevel=3)
        return fields

    def _describe(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        bounds = "".join(f", {name}={value.isoformat()!r}" for name, value in
                         (("start_date", self.start_date), ("end_date", self.end_date)) if value is not None)
        return f"{type(self).__name__}({self._describe()}{bounds}, timezone={self.timezone!r})"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class IntervalClock(Clock):
    """Fires every ``interval`` from ``start_date`` (default 2019-01-01 00:00 in the clock's zone,
    which only aligns the grid). Whole-day intervals keep the local time of day across DST."""

    kind = "interval"

    def __init__(
        self,
        interval: timedelta,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        parameter_defaults: dict[str, Any] | None = None,
        labels: list[str] | None = None,
        *,
        timezone: str | tzinfo | None = None,
    ) -> None:
        if not isinstance(interval, timedelta):
            raise TypeError(f"interval must be a datetime.timedelta, not {type(interval).__name__}.")
        if interval <= timedelta(0):
            raise ValueError("interval must be positive.")
        super().__init__(start_date, end_date, parameter_defaults, labels, timezone=timezone)
        self.interval = interval
        self.anchor = self.start_date or aware(DEFAULT_INTERVAL_START, self.zone)

    def _times(self, lower: datetime) -> Iterator[datetime]:
        if self.interval % _DAY == timedelta(0):
            days = self.interval // _DAY
            local_anchor = local_naive(self.anchor, self.zone)
            # Start one step early: the local grid may resolve to instants just before ``lower``.
            k = (local_naive(lower, self.zone) - local_anchor).days // days - 1
            while True:
                yield resolve_shifting_gaps(local_anchor + timedelta(days=k * days), self.zone)
                k += 1
        else:
            anchor = self.anchor.astimezone(UTC)  # elapsed time: UTC arithmetic, not wall-clock
            k = (lower - anchor) // self.interval
            while True:
                yield anchor + k * self.interval
                k += 1

    def _server_fields(self) -> dict[str, Any]:
        if self.interval % timedelta(seconds=1):
            raise ValueError(f"The Flowdeck server runs interval schedules in whole seconds; {self.interval} is not. "
                             "Round the interval to whole seconds.")
        if not MIN_SERVER_INTERVAL <= self.interval <= MAX_SERVER_INTERVAL:
            raise ValueError(f"The Flowdeck server runs interval schedules every {MIN_SERVER_INTERVAL.seconds} s "
                             f"to {MAX_SERVER_INTERVAL.days} days; {self.interval} is outside that range.")
        return {"interval_seconds": self.interval // timedelta(seconds=1), "anchor_date": self.anchor.isoformat()}

    def _describe(self) -> str:
        return f"interval={self.interval!r}"


class CronClock(Clock):
    """Fires at the local wall-clock times that match a five-field ``cron`` expression.

    ``day_or`` (default True, classic cron) joins a restricted day-of-month and a restricted
    day-of-week with OR; False joins them with AND (e.g. "the first Friday": ``0 9 1-7 * FRI``)."""

    kind = "cron"

    def __init__(
        self,
        cron: str,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        parameter_defaults: dict[str, Any] | None = None,
        labels: list[str] | None = None,
        day_or: bool | None = None,
        *,
        timezone: str | tzinfo | None = None,
    ) -> None:
        self.expression = CronExpression.parse(cron, day_or=True if day_or is None else bool(day_or))
        super().__init__(start_date, end_date, parameter_defaults, labels, timezone=timezone)
        self.cron = cron
        self.day_or = self.expression.day_or

    def _times(self, lower: datetime) -> Iterator[datetime]:
        # Local wall times resolve to instants monotonically (fold=0): none before ``lower``'s own
        # local time can resolve to ``lower`` or later, so the scan starts just before it.
        naive = local_naive(lower, self.zone) - timedelta(seconds=1)
        while (found := self.expression.next_after(naive)) is not None:
            naive = found
            resolved = resolve_skipping_gaps(naive, self.zone)
            if resolved is not None:
                yield resolved

    def _server_fields(self) -> dict[str, Any]:
        expression = self.expression
        if not expression.day_or and not expression.any_day and not expression.any_weekday:
            raise ValueError(f"The Flowdeck server joins day-of-month and day-of-week with OR (classic cron); "
                             f"'{self.cron}' with day_or=False cannot be registered. Use one of the two fields, "
                             "or a filter-free expression that means what you want with OR.")
        return {"cron": expression.expression}

    def _describe(self) -> str:
        return f"cron={self.cron!r}" + ("" if self.day_or else ", day_or=False")


class DatesClock(Clock):
    """Fires at the given ``dates`` (naive ones are UTC), emitted in UTC. Runs locally only: the
    Flowdeck server does not store one-off dates as a schedule."""

    kind = "dates"

    def __init__(
        self,
        dates: Sequence[datetime],
        parameter_defaults: dict[str, Any] | None = None,
        labels: list[str] | None = None,
    ) -> None:
        super().__init__(None, None, parameter_defaults, labels)
        self.dates = sorted({_utc(date) for date in dates})
        if not self.dates:
            raise ValueError("A DatesClock needs at least one date.")

    def _times(self, lower: datetime) -> Iterator[datetime]:
        return iter(self.dates)

    def times(self, after: datetime, *, inclusive: bool = False, until: datetime | None = None) -> Iterator[datetime]:
        lower = _utc(after)
        upper = None if until is None else _utc(until)
        for moment in self.dates:
            if (moment > lower or inclusive and moment == lower) and (upper is None or moment <= upper):
                yield moment

    def _describe(self) -> str:
        return f"dates=[{', '.join(repr(d.isoformat()) for d in self.dates)}]"


__all__ = ["Clock", "ClockEvent", "CronClock", "DatesClock", "IntervalClock"]
