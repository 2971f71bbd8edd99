"""A small five-field cron parser and matcher (minute hour day-of-month month day-of-week).

It accepts the common syntax: ``*``, numbers, ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n``,
lists ``a,b``, month and weekday names (``JAN``, ``MON``, case-insensitive), ``7`` for Sunday, and the
macros ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``.

Day-of-month and day-of-week combine as the Flowdeck server's cron library combines them: when both
are restricted they are joined with OR (``day_or=True``, classic cron), otherwise the restricted one
applies. A field counts as unrestricted when it is ``*``, or when it lists every value and the other
field's text contains a ``*`` (``1-31`` next to ``*/2``). Syntax that the server would read
differently or not at all (``L``, ``W``, ``#``, ``?``, ``H``, wrapping ranges with steps, ``a-a``
ranges) is refused here with a message, so an expression this module accepts means the same thing
locally and on the server.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
# (lowest, highest) value written in each field; day-of-week accepts 7 for Sunday.
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTH_NAMES = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_WEEKDAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_NAMES: tuple[dict[str, int], ...] = ({}, {}, {}, _MONTH_NAMES, _WEEKDAY_NAMES)
_DAY, _WEEKDAY = 2, 4
# How far ahead a search looks before deciding the expression never matches again (the server's
# cron library gives up after 50 years too).
_SEARCH_YEARS = 50


class CronError(ValueError):
    """A cron expression that cannot be parsed, or that never matches a date."""


def _value(token: str, field: int, expression: str) -> int:
    low, high = _BOUNDS[field]
    if token.isascii() and token.isdigit():
        number = int(token)
    elif token.lower() in _NAMES[field]:
        number = _NAMES[field][token.lower()]
    else:
        raise CronError(f"'{token}' is not a valid {_FIELD_NAMES[field]} in cron expression '{expression}' "
                        "(Flowdeck cron takes numbers, names such as JAN or MON, ranges, steps and lists; "
                        "not L, W, # or ?).")
    if not low <= number <= high:
        raise CronError(f"{_FIELD_NAMES[field].capitalize()} {number} is out of range {low}-{high} "
                        f"in cron expression '{expression}'.")
    return number


def _step(token: str, field: int, expression: str) -> int:
    if not (token.isascii() and token.isdigit()) or int(token) == 0:
        raise CronError(f"'{token}' is not a valid step for the {_FIELD_NAMES[field]} in cron expression "
                        f"'{expression}': give a whole number of at least 1.")
    return int(token)


def _expand_item(item: str, field: int, expression: str) -> set[int]:
    low, high = _BOUNDS[field]
    if field == _WEEKDAY:
        high = 6 if item.startswith("*") else 7
    base, _, step_text = item.partition("/")
    step = _step(step_text, field, expression) if step_text else 1
    if base == "*":
        first, last = low, high
    elif "-" in base:
        start_text, _, end_text = base.partition("-")
        first, last = _value(start_text, field, expression), _value(end_text, field, expression)
        # The server's cron library reads an equal range ("5-5", "SUN-7") as the whole field.
        if first == last or field == _WEEKDAY and first % 7 == last % 7 and (first, last) != (0, 7):
            raise CronError(f"The range '{base}' in cron expression '{expression}' starts and ends on the same "
                            f"value: write '{start_text}' alone.")
        if first > last:
            if step_text:
                raise CronError(f"The range '{base}' in cron expression '{expression}' wraps around: a wrapping "
                                "range cannot take a step; list the values instead.")
            # A wrapping range such as 22-2 (hours) or FRI-MON: to the field's end, then from its start.
            return {*range(first, high + 1), *range(low, last + 1)}
    else:
        first = _value(base, field, expression)
        if not step_text:
            return {first}
        if field == _WEEKDAY and first == 7:
            raise CronError(f"'{item}' in cron expression '{expression}': write Sunday as 0 before a step.")
        last = _BOUNDS[field][1] if field != _WEEKDAY else 6
    return set(range(first, last + 1, step))


def _parse_field(text: str, field: int, expression: str) -> frozenset[int]:
    items = text.split(",")
    if "*" in items and len(items) > 1 or "" in items:
        raise CronError(f"'{text}' is not a valid {_FIELD_NAMES[field]} list in cron expression '{expression}'.")
    values: set[int] = set()
    for item in items:
        if item.count("/") > 1 or item.count("-") > 1 or item.startswith("*") and item != "*" and (
            not item.startswith("*/")
        ):
            raise CronError(f"'{item}' is not a valid {_FIELD_NAMES[field]} in cron expression '{expression}'.")
        values |= _expand_item(item, field, expression)
    if field == _WEEKDAY and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def _unrestricted(field: int, values: frozenset[int], own_text: str, other_text: str) -> bool:
    if own_text == "*":
        return True
    full = len(values) == (31 if field == _DAY else 7)
    return full and "*" in other_text


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression; :meth:`next_after` walks its matches on naive wall-clock times."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool
    day_or: bool = True

    @classmethod
    def parse(cls, text: str, *, day_or: bool = True) -> CronExpression:
        """Parse ``text``; raise :class:`CronError` with a readable message when it is not valid."""
        if not isinstance(text, str):
            raise CronError(f"A cron expression must be a string, not {type(text).__name__}.")
        stripped = " ".join(text.split())
        expression = MACROS.get(stripped.lower(), stripped)
        fields = expression.split(" ")
        if len(fields) != 5 or not stripped:
            raise CronError(f"'{text}' is not a cron expression: give five fields (minute hour day-of-month "
                            "month day-of-week), e.g. '0 9 * * 1-5', or a macro such as '@daily'.")
        minutes, hours, days, months, weekdays = (_parse_field(part, i, text) for i, part in enumerate(fields))
        parsed = cls(
            expression=expression,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=days,
            months=tuple(sorted(months)),
            weekdays=weekdays,
            any_day=_unrestricted(_DAY, days, fields[_DAY], fields[_WEEKDAY]),
            any_weekday=_unrestricted(_WEEKDAY, weekdays, fields[_WEEKDAY], fields[_DAY]),
            day_or=day_or,
        )
        if parsed.next_after(datetime(2000, 1, 1)) is None:
            raise CronError(f"Cron expression '{text}' never matches a date.")
        return parsed

    @property
    def day_rule_uses_or(self) -> bool:
        """True when day-of-month and day-of-week are both restricted and joined with OR."""
        return not self.any_day and not self.any_weekday and self.day_or

    def matches_day(self, day: date) -> bool:
        """Whether the expression fires on ``day`` (at some time of it)."""
        if day.month not in self.months:
            return False
        in_days = self.any_day or day.day in self.days
        in_weekdays = self.any_weekday or (day.weekday() + 1) % 7 in self.weekdays
        if self.day_rule_uses_or:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching wall-clock minute strictly after the naive ``moment``, or None when
        nothing matches in the next 50 years."""
        current = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        last_year = moment.year + _SEARCH_YEARS
        while current.year <= last_year:
            if current.month not in self.months:
                index = bisect_right(self.months, current.month)
                if index < len(self.months):
                    current = datetime(current.year, self.months[index], 1)
                elif current.year == 9999:
                    return None
                else:
                    current = datetime(current.year + 1, self.months[0], 1)
                continue
            if not self.matches_day(current.date()):
                current = datetime(current.year, current.month, current.day) + timedelta(days=1)
                continue
            if current.hour not in self.hours:
                index = bisect_right(self.hours, current.hour)
                if index == len(self.hours):
                    current = datetime(current.year, current.month, current.day) + timedelta(days=1)
                else:
                    current = current.replace(hour=self.hours[index], minute=0)
                continue
            if current.minute not in self.minutes:
                index = bisect_right(self.minutes, current.minute)
                if index == len(self.minutes):
                    current = current.replace(minute=0) + timedelta(hours=1)
                    continue
                current = current.replace(minute=self.minutes[index])
            return current
        return None
