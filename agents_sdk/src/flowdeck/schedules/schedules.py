"""Schedules say when a flow runs (Prefect 1's ``prefect.schedules.schedules``).

A :class:`Schedule` merges the events of its clocks; optional filters and adjustments then pick and
move them (locally only). ``flow.register()`` sends :meth:`Schedule.serialize` to the server, which
evaluates the clocks with the same time maths, so ``schedule.next()`` shows the runs the server
will create.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, overload

from flowdeck.schedules.clocks import Clock, ClockEvent, CronClock, IntervalClock
from flowdeck.schedules.zones import UTC_ZONE, aware

# Like Prefect 1: clocks may be infinite and filters prohibitive, so a search gives up after this many.
MAX_EVENTS_CHECKED = 10_000


class Schedule:
    """Generates the times of flow runs.

    Candidate events come from one or more ``clocks``. If given, all ``filters`` must accept an
    event, at least one of ``or_filters`` must, and none of ``not_filters`` may; the ``adjustments``
    are then applied in order to the events that pass."""

    def __init__(
        self,
        clocks: Sequence[Clock],
        filters: Sequence[Callable[[datetime], bool]] | None = None,
        or_filters: Sequence[Callable[[datetime], bool]] | None = None,
        not_filters: Sequence[Callable[[datetime], bool]] | None = None,
        adjustments: Sequence[Callable[[datetime], datetime]] | None = None,
    ) -> None:
        if isinstance(clocks, Clock) or not isinstance(clocks, Iterable):
            raise TypeError("clocks must be a list of clocks, e.g. Schedule(clocks=[IntervalClock(...)]).")
        self.clocks: list[Clock] = list(clocks)
        if not self.clocks:
            raise ValueError("A schedule needs at least one clock.")
        for clock in self.clocks:
            if not isinstance(clock, Clock):
                raise TypeError(f"{clock!r} is not a clock (flowdeck.schedules.clocks.Clock).")
        self.filters = list(filters or [])
        self.or_filters = list(or_filters or [])
        self.not_filters = list(not_filters or [])
        self.adjustments = list(adjustments or [])

    def __repr__(self) -> str:
        return f"Schedule(clocks={self.clocks!r})"

    @property
    def start_date(self) -> datetime | None:
        """The earliest start date of the clocks, or None if any clock has none."""
        dates = [clock.start_date for clock in self.clocks]
        return None if any(d is None for d in dates) else min(d for d in dates if d is not None)

    @property
    def end_date(self) -> datetime | None:
        """The latest end date of the clocks, or None if any clock has none."""
        dates = [clock.end_date for clock in self.clocks]
        return None if any(d is None for d in dates) else max(d for d in dates if d is not None)

    def _passes(self, moment: datetime) -> bool:
        return (all(check(moment) for check in self.filters)
                and (not self.or_filters or any(check(moment) for check in self.or_filters))
                and not any(check(moment) for check in self.not_filters))

    def _events(self, after: datetime) -> Iterator[ClockEvent]:
        streams = [clock.events(after=after) for clock in self.clocks]
        return heapq.merge(*streams, key=lambda event: event.instant)

    @overload
    def next(self, n: int, after: datetime | None = None, return_events: Literal[False] = False) -> list[datetime]: ...

    @overload
    def next(self, n: int, after: datetime | None = None, *, return_events: Literal[True]) -> list[ClockEvent]: ...

    @overload
    def next(self, n: int, after: datetime | None, return_events: Literal[True]) -> list[ClockEvent]: ...

    def next(self, n: int, after: datetime | None = None,
             return_events: bool = False) -> list[datetime] | list[ClockEvent]:
        """The next ``n`` run times strictly after ``after`` (default: now; a naive ``after`` is
        UTC), as aware datetimes in each clock's time zone, or as :class:`ClockEvent` objects (with
        the clock's parameter values) when ``return_events`` is true. Stops after checking 10,000
        candidate events."""
        start = datetime.now(UTC) if after is None else aware(after, UTC_ZONE)
        found: list[ClockEvent] = []
        for checked, event in enumerate(self._events(start)):
            if len(found) >= n or checked >= MAX_EVENTS_CHECKED:
                break
            if not self._passes(event.start_time):
                continue
            moment = event.start_time
            for adjust in self.adjustments:
                moment = adjust(moment)
            adjusted = ClockEvent(moment, event.parameter_defaults, event.labels)
            if any(adjusted == earlier for earlier in found[-len(self.clocks):]):
                continue  # two clocks firing the same run at the same time make one run
            found.append(adjusted)
        if return_events:
            return found
        return [event.start_time for event in found]

    def serialize(self) -> dict[str, Any]:
        """The schedule as the Flowdeck server registers it: ``{"clocks": [...]}``.

        Raises ValueError when the server cannot reproduce it: filters and adjustments, and clocks
        the server does not evaluate (e.g. :class:`DatesClock`)."""
        unsupported = [name for name in ("filters", "or_filters", "not_filters", "adjustments") if getattr(self, name)]
        if unsupported:
            raise ValueError(f"The Flowdeck server evaluates a schedule's clocks only; this schedule also has "
                             f"{' and '.join(unsupported)}, which it cannot reproduce. Express the rule as a "
                             "CronClock instead (e.g. '0 9 * * 1-5' runs on weekdays at 9:00).")
        return {"clocks": [clock.serialize() for clock in self.clocks]}


def IntervalSchedule(  # noqa: N802 - Prefect 1's public name
    start_date: datetime | None = None,
    interval: timedelta | None = None,
    end_date: datetime | None = None,
    *,
    timezone: str | tzinfo | None = None,
) -> Schedule:
    """A schedule that runs every ``interval`` from ``start_date`` (see :class:`IntervalClock`)."""
    if interval is None:
        raise TypeError("IntervalSchedule needs an interval, e.g. IntervalSchedule(interval=timedelta(hours=1)).")
    return Schedule(clocks=[IntervalClock(interval=interval, start_date=start_date, end_date=end_date,
                                          timezone=timezone)])


def CronSchedule(  # noqa: N802 - Prefect 1's public name
    cron: str,
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    day_or: bool | None = None,
    *,
    timezone: str | tzinfo | None = None,
) -> Schedule:
    """A schedule that runs at the local times matching ``cron`` (see :class:`CronClock`)."""
    return Schedule(clocks=[CronClock(cron=cron, start_date=start_date, end_date=end_date, day_or=day_or,
                                      timezone=timezone)])


def union(*schedules: Schedule) -> Schedule:
    """One schedule that runs whenever any of ``schedules`` runs (their clocks together).

    Schedules with filters or adjustments cannot be combined: those apply to all of a schedule's
    clocks, so merging would change what the others mean."""
    if not schedules:
        raise ValueError("union() needs at least one schedule.")
    for schedule in schedules:
        if schedule.filters or schedule.or_filters or schedule.not_filters or schedule.adjustments:
            raise ValueError("union() cannot combine schedules that have filters or adjustments.")
    return Schedule(clocks=[clock for schedule in schedules for clock in schedule.clocks])
