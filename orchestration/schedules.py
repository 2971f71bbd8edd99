"""Schedule time maths: when does a schedule fire? Pure functions, no database.

A :class:`~orchestration.models.Schedule` is one of three kinds, each evaluated in the schedule's
IANA time zone so that "every day at 09:00 Europe/Berlin" stays 09:00 local across DST (D7):

- **interval**: ``anchor_date + k * interval_seconds`` for every integer ``k`` (the anchor only
  aligns the grid). An interval that is a whole number of days is added in *local wall-clock* days,
  so a daily run keeps its local time of day; a local time that does not exist that day (the
  spring-forward gap) is moved forward by the gap (PEP 495, ``fold=0``), and an ambiguous one (the
  fall-back hour) fires once, at its first occurrence. Any other interval is added in absolute
  time (an hourly schedule fires every 60 minutes, DST or not). The minimum interval is
  :data:`MIN_INTERVAL_SECONDS` (10 s), since the scheduler ticks every 10 s.
- **cron**: a standard five-field expression (croniter) matched against local wall-clock times;
  a local time that does not exist (spring forward) is skipped, an ambiguous one (fall back) fires
  once, at its first occurrence.
- **rrule**: an RFC 5545 recurrence rule (``dateutil.rrule.rrulestr``) whose DTSTART is a local wall
  time in the schedule's zone (from the text, without ``TZID``/``Z``, or else the anchor date or the
  start date); non-existent and ambiguous local times are handled as for cron.

``start_date`` and ``end_date`` bound the occurrences (both inclusive). Every function returns
aware UTC datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from dateutil import rrule as rrule_module
from dateutil.rrule import rruleset, rrulestr

from core.errors import InvalidInput

MIN_INTERVAL_SECONDS = 10
MAX_INTERVAL_SECONDS = 366 * 86400
DAY_SECONDS = 86400
# Guards against expressions that never match (e.g. "0 0 30 2 *" or an exhausted RRULE).
_MAX_ITERATIONS = 100_000
_EPOCH = datetime(2000, 1, 1)

KINDS = ("interval", "cron", "rrule")


@dataclass(frozen=True)
class ScheduleSpec:
    """What the time maths needs of a schedule (a Schedule row has the same attributes)."""

    kind: str
    interval_seconds: int | None = None
    anchor_date: datetime | None = None
    cron: str = ""
    rrule: str = ""
    timezone: str = "UTC"
    start_date: datetime | None = None
    end_date: datetime | None = None


def _invalid(field: str, message: str, code: str = "invalid_schedule") -> InvalidInput:
    return InvalidInput(message, code=code, details={field: [message]})


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``, or InvalidInput."""
    if not name or not isinstance(name, str):
        raise _invalid("timezone", "A schedule needs an IANA time zone such as 'Europe/Berlin'.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _invalid("timezone", f"'{name}' is not a known IANA time zone (e.g. 'Europe/Berlin', 'UTC').") from None


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise _invalid(field, f"'{field}' must carry a time zone offset.")
    return value


def validate_cron(expression: str) -> str:
    expression = (expression or "").strip()
    fields = expression.split()
    if len(fields) != 5:
        raise _invalid("cron", f"'{expression}' is not a cron expression: give five fields "
                               "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'.")
    if not croniter.is_valid(expression):
        raise _invalid("cron", f"'{expression}' is not a valid cron expression.")
    try:
        croniter(expression, _EPOCH).get_next(datetime)
    except CroniterBadDateError:
        raise _invalid("cron", f"'{expression}' never matches a date.") from None
    return expression


def _parse_rrule(text: str, dtstart: datetime) -> rruleset:
    text = (text or "").strip()
    if not text:
        raise _invalid("rrule", "An rrule schedule needs a recurrence rule, e.g. 'FREQ=DAILY;BYHOUR=9;BYMINUTE=0'.")
    if len(text) > 2000:
        raise _invalid("rrule", "The recurrence rule is too long (2,000 characters at most).")
    if re.search(r"DTSTART[^:\n]*;TZID=|DTSTART[^\n]*Z\s*($|\n)", text, flags=re.IGNORECASE):
        raise _invalid("rrule", "Give DTSTART as a local time without TZID or 'Z': the schedule's time zone applies.")
    try:
        rule = rrulestr(text, dtstart=dtstart, forceset=True)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise _invalid("rrule", f"'{text}' is not a valid recurrence rule: {exc}.") from None
    assert isinstance(rule, rruleset)
    return rule


def validate_spec(spec: Any) -> None:
    """Raise InvalidInput (with the offending field in ``details``) unless ``spec`` — a Schedule or a
    :class:`ScheduleSpec` — describes a schedule that can be evaluated."""
    if spec.kind not in KINDS:
        raise _invalid("kind", f"'{spec.kind}' is not a schedule kind; use one of {', '.join(KINDS)}.")
    zone(spec.timezone)
    _aware(spec.anchor_date, "anchor_date")
    _aware(spec.start_date, "start_date")
    _aware(spec.end_date, "end_date")
    if spec.start_date is not None and spec.end_date is not None and spec.end_date < spec.start_date:
        raise _invalid("end_date", "The end date is before the start date.")
    if spec.kind == "interval":
        seconds = spec.interval_seconds
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not (
            MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS
        ):
            raise _invalid("interval_seconds", f"An interval schedule needs interval_seconds between "
                                               f"{MIN_INTERVAL_SECONDS} and {MAX_INTERVAL_SECONDS}.")
        if spec.cron or spec.rrule:
            raise _invalid("kind", "An interval schedule takes no cron or rrule.")
    elif spec.kind == "cron":
        validate_cron(spec.cron)
        if spec.interval_seconds or spec.rrule:
            raise _invalid("kind", "A cron schedule takes no interval_seconds or rrule.")
    else:
        _check_rrule_gaps(_parse_rrule(spec.rrule, _EPOCH), spec.rrule)
        if spec.interval_seconds or spec.cron:
            raise _invalid("kind", "An rrule schedule takes no interval_seconds or cron.")


# How many of an RRULE's first occurrences are compared for the minimum gap: enough to go round any
# BYSECOND / BYMINUTE pattern within its period.
_RRULE_GAP_SAMPLE = 500


def _check_rrule_gaps(rule: rruleset, text: str) -> None:
    """Every schedule kind fires at most once per MIN_INTERVAL_SECONDS (the scheduler's tick): an
    RRULE whose occurrences come closer (FREQ=SECONDLY, or BYSECOND=0,5 …) is refused."""
    previous: datetime | None = None
    for n, moment in enumerate(rule):
        if n >= _RRULE_GAP_SAMPLE:
            break
        if previous is not None and (moment - previous).total_seconds() < MIN_INTERVAL_SECONDS:
            raise _invalid("rrule", f"'{text}' fires {moment - previous} apart; a schedule fires at most every "
                                    f"{MIN_INTERVAL_SECONDS} seconds.")
        previous = moment


def _local_naive(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _resolve_skip(naive: datetime, tz: ZoneInfo) -> datetime | None:
    """The UTC instant of a local wall time: None when it does not exist (DST gap); its first
    occurrence when it is ambiguous (fall back)."""
    aware = naive.replace(tzinfo=tz, fold=0)
    as_utc = aware.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return as_utc


def _resolve_shift(naive: datetime, tz: ZoneInfo) -> datetime:
    """Like :func:`_resolve_skip`, but a non-existent local time moves forward by the gap."""
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _wall_clock_matches(naive_times: Iterator[datetime], tz: ZoneInfo) -> Iterator[datetime]:
    for count, naive in enumerate(naive_times):
        if count >= _MAX_ITERATIONS:
            return
        resolved = _resolve_skip(naive, tz)
        if resolved is not None:
            yield resolved


def _interval_times(spec: Any, tz: ZoneInfo, lower: datetime) -> Iterator[datetime]:
    seconds = int(spec.interval_seconds)
    anchor = spec.anchor_date or spec.start_date or _EPOCH.replace(tzinfo=UTC)
    if seconds % DAY_SECONDS == 0:
        days = seconds // DAY_SECONDS
        local_anchor = _local_naive(anchor, tz)
        offset_days = (_local_naive(lower, tz) - local_anchor).days
        k = offset_days // days - 1
        while True:
            yield _resolve_shift(local_anchor + timedelta(days=k * days), tz)
            k += 1
    else:
        step = timedelta(seconds=seconds)
        anchor = anchor.astimezone(UTC)  # aware arithmetic in a zone would be wall-clock arithmetic
        k = (lower - anchor) // step
        while True:
            yield anchor + k * step
            k += 1


def _cron_times(spec: Any, tz: ZoneInfo, lower: datetime) -> Iterator[datetime]:
    # Local wall times resolve to instants monotonically (fold=0), so no local time before
    # ``lower``'s own can resolve to ``lower`` or later: the scan starts there.
    start = _local_naive(lower, tz) - timedelta(seconds=1)
    try:
        iterator = croniter(spec.cron.strip(), start)
    except (CroniterError, ValueError, TypeError, KeyError):
        raise _invalid("cron", f"'{spec.cron}' is not a valid cron expression.") from None

    def naive_times() -> Iterator[datetime]:
        while True:
            try:
                yield iterator.get_next(datetime)
            except CroniterBadDateError:  # the expression never matches again
                return

    return _wall_clock_matches(naive_times(), tz)


_FIXED_STEPS = {
    rrule_module.WEEKLY: timedelta(weeks=1),
    rrule_module.DAILY: timedelta(days=1),
    rrule_module.HOURLY: timedelta(hours=1),
    rrule_module.MINUTELY: timedelta(minutes=1),
    rrule_module.SECONDLY: timedelta(seconds=1),
}


def _fast_forward(ruleset: rruleset, start: datetime) -> rruleset:
    """dateutil iterates a rule from its DTSTART: a minutely rule started a year ago would walk half a
    million candidates per evaluation. Rules of a fixed period and no COUNT generate the same times
    from a DTSTART moved forward by whole multiples of ``INTERVAL × period`` (wall-clock arithmetic,
    as dateutil's), so they are moved to just before ``start``."""
    try:
        rules = list(ruleset._rrule)
        moved = rruleset()
        for rule in rules:
            step = _FIXED_STEPS.get(rule._freq)
            if step is not None and rule._count is None:
                period = step * rule._interval
                whole = (start - rule._dtstart) // period - 1
                if whole > 0:
                    rule = rule.replace(dtstart=rule._dtstart + whole * period)
            moved.rrule(rule)
        for date in ruleset._rdate:
            moved.rdate(date)
        for rule in ruleset._exrule:
            moved.exrule(rule)
        for date in ruleset._exdate:
            moved.exdate(date)
    except AttributeError:  # dateutil's internals changed: correct, only slower
        return ruleset
    return moved


def _rrule_times(spec: Any, tz: ZoneInfo, lower: datetime) -> Iterator[datetime]:
    anchor = spec.anchor_date or spec.start_date
    dtstart = _local_naive(anchor, tz) if anchor is not None else _EPOCH
    start = _local_naive(lower, tz) - timedelta(seconds=1)  # see _cron_times
    rule = _fast_forward(_parse_rrule(spec.rrule, dtstart), start)
    return _wall_clock_matches(rule.xafter(start, inc=True), tz)


def occurrences(schedule: Any, *, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The schedule's fire times ``t`` with ``after <= t <= until`` (and within its start/end
    dates), in order, at most ``limit`` of them, as aware UTC datetimes. ``schedule`` is a Schedule
    row or a :class:`ScheduleSpec`; an invalid one raises InvalidInput."""
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("occurrences() needs aware datetimes")
    tz = zone(schedule.timezone)
    lower = max(after, schedule.start_date) if schedule.start_date else after
    upper = min(until, schedule.end_date) if schedule.end_date else until
    if limit <= 0 or upper < lower:
        return []
    if schedule.kind == "interval":
        times = _interval_times(schedule, tz, lower)
    elif schedule.kind == "cron":
        times = _cron_times(schedule, tz, lower)
    elif schedule.kind == "rrule":
        times = _rrule_times(schedule, tz, lower)
    else:
        raise _invalid("kind", f"'{schedule.kind}' is not a schedule kind; use one of {', '.join(KINDS)}.")
    found: list[datetime] = []
    previous: datetime | None = None
    for moment in times:
        if moment > upper:
            break
        if moment < lower or moment == previous:
            continue
        found.append(moment)
        previous = moment
        if len(found) >= limit:
            break
    return found


def next_occurrence(schedule: Any, *, after: datetime) -> datetime | None:
    """The first fire time at or after ``after`` within the next ~year, or None."""
    found = occurrences(schedule, after=after, until=after + timedelta(days=400), limit=1)
    return found[0] if found else None
