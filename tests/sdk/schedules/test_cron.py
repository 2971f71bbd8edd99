"""The SDK's own cron parser: the syntax it takes, the messages it gives, and agreement with the
server's cron library (croniter) on every expression it accepts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdeck.schedules.cron import CronError, CronExpression
from orchestration.schedules import validate_cron


def matches(expression: str, start: datetime, count: int, *, day_or: bool = True) -> list[datetime]:
    parsed = CronExpression.parse(expression, day_or=day_or)
    found: list[datetime] = []
    current = start
    while len(found) < count:
        nxt = parsed.next_after(current)
        assert nxt is not None
        found.append(nxt)
        current = nxt
    return found


def croniter_matches(expression: str, start: datetime, count: int, *, day_or: bool = True) -> list[datetime]:
    iterator = croniter(expression, start, day_or=day_or)
    return [iterator.get_next(datetime) for _ in range(count)]


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("0 9 * * 1-5", datetime(2026, 1, 2, 9, 0), [datetime(2026, 1, 5, 9), datetime(2026, 1, 6, 9)]),
        ("*/20 * * * *", datetime(2026, 1, 1, 0, 0, 30), [datetime(2026, 1, 1, 0, 20), datetime(2026, 1, 1, 0, 40)]),
        ("0 0 29 2 *", datetime(2026, 1, 1), [datetime(2028, 2, 29), datetime(2032, 2, 29)]),
        ("30 6 * JAN,jul SUN", datetime(2026, 1, 1), [datetime(2026, 1, 4, 6, 30), datetime(2026, 1, 11, 6, 30)]),
        ("0 22-2 * * *", datetime(2026, 1, 1, 1, 30), [datetime(2026, 1, 1, 2), datetime(2026, 1, 1, 22)]),
        ("0 12 * * 7", datetime(2026, 1, 1), [datetime(2026, 1, 4, 12), datetime(2026, 1, 11, 12)]),
        ("@hourly", datetime(2026, 1, 1, 10, 0), [datetime(2026, 1, 1, 11), datetime(2026, 1, 1, 12)]),
        ("@weekly", datetime(2026, 1, 1), [datetime(2026, 1, 4), datetime(2026, 1, 11)]),
        ("@yearly", datetime(2026, 1, 1), [datetime(2027, 1, 1), datetime(2028, 1, 1)]),
    ],
)
def test_next_matches_are_strictly_after_the_start(expression: str, start: datetime,
                                                   expected: list[datetime]) -> None:
    assert matches(expression, start, 2) == expected


def test_day_of_month_and_weekday_join_with_or_unless_day_or_is_false() -> None:
    # The 13th of a month or any Friday (classic cron) ...
    either = matches("0 0 13 * FRI", datetime(2026, 2, 1), 4)
    assert either == [datetime(2026, 2, 6), datetime(2026, 2, 13), datetime(2026, 2, 20), datetime(2026, 2, 27)]
    # ... or only Friday the 13th.
    both = matches("0 0 13 * FRI", datetime(2026, 1, 1), 2, day_or=False)
    assert both == [datetime(2026, 2, 13), datetime(2026, 3, 13)]


def test_a_full_day_list_beside_a_star_field_counts_as_unrestricted_like_croniter() -> None:
    # "1-31" next to "*/2" is unrestricted (croniter's rule), so the weekday step applies alone.
    expression = CronExpression.parse("0 0 1-31 * */2")
    assert expression.any_day and not expression.any_weekday
    start = datetime(2026, 3, 1)
    assert matches("0 0 1-31 * */2", start, 10) == croniter_matches("0 0 1-31 * */2", start, 10)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 9 * *", "give five fields"),
        ("", "give five fields"),
        ("61 * * * *", "Minute 61 is out of range 0-59"),
        ("0 24 * * *", "Hour 24 is out of range 0-23"),
        ("0 0 0 * *", "Day of month 0 is out of range 1-31"),
        ("0 0 L * *", "not L, W, # or ?"),
        ("0 0 ? * MON", "not L, W, # or ?"),
        ("0 0 * * MON#2", "not L, W, # or ?"),
        ("*/0 * * * *", "not a valid step"),
        ("5-5 * * * *", "write '5' alone"),
        ("0 0 * * 7-SUN", "write '7' alone"),
        ("0 22-2/2 * * *", "wrapping range cannot take a step"),
        ("*,5 * * * *", "not a valid minute list"),
        ("0 0 30 2 *", "never matches"),
        ("0 0 * FOO *", "'FOO' is not a valid month"),
        ("0 0 * * MON-", "not a valid day of week"),
    ],
)
def test_invalid_expressions_are_refused_with_a_message(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("?", r"\?")):
        CronExpression.parse(expression)


def test_a_cron_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        CronExpression.parse("not cron")


# Expressions built from the whole grammar, valid and not: whatever the parser accepts must be
# accepted by the server and match exactly the times croniter gives.
_FIELD_SPECS = [(0, 59, []), (0, 23, []), (1, 31, []), (1, 12, ["jan", "FEB", "Mar", "dec"]),
                (0, 7, ["sun", "MON", "fri", "Sat"])]


def _field(index: int) -> st.SearchStrategy[str]:
    low, high, names = _FIELD_SPECS[index]
    value = st.one_of(st.integers(low - 1, high + 1).map(str), st.sampled_from(names) if names else st.nothing())
    step = st.integers(0, high + 2).map(str)
    item = st.one_of(
        st.just("*"),
        step.map(lambda s: f"*/{s}"),
        value,
        st.tuples(value, value).map("-".join),
        st.tuples(value, value, step).map(lambda t: f"{t[0]}-{t[1]}/{t[2]}"),
        st.tuples(value, step).map("/".join),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


expressions = st.tuples(*(_field(i) for i in range(5))).map(" ".join)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=expressions, start=st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1)),
       day_or=st.booleans())
def test_accepted_expressions_mean_what_croniter_means(expression: str, start: datetime, day_or: bool) -> None:
    try:
        CronExpression.parse(expression, day_or=day_or)
    except CronError:
        return
    assert validate_cron(expression) == expression
    assert matches(expression, start, 12, day_or=day_or) == croniter_matches(expression, start, 12, day_or=day_or)


@settings(max_examples=200, deadline=None)
@given(expression=st.sampled_from(["0 9 * * 1-5", "*/7 */5 * * *", "0 0 1,15 * MON", "15 3 */10 FEB-APR *",
                                   "0 12 31 * *", "59 23 * 2 SAT-SUN", "0 0 13 * 5", "1-10/3 0 * * 0-7"]),
       start=st.datetimes(datetime(1999, 1, 1), datetime(2060, 1, 1)))
def test_common_expressions_agree_with_croniter_from_any_start(expression: str, start: datetime) -> None:
    assert matches(expression, start, 30) == croniter_matches(expression, start, 30)


def test_a_rare_match_is_found_quickly() -> None:
    expression = CronExpression.parse("0 0 29 2 1")  # 29 February or a Monday of February...
    rare = CronExpression.parse("0 0 29 2 1", day_or=False)  # ...29 February that is a Monday
    assert expression.next_after(datetime(2026, 1, 1)) == datetime(2026, 2, 2)
    assert rare.next_after(datetime(2026, 1, 1)) == datetime(2044, 2, 29)
    assert rare.next_after(datetime(2044, 2, 29)) == datetime(2072, 2, 29)


def test_next_after_ignores_seconds_and_microseconds_of_the_start() -> None:
    expression = CronExpression.parse("* * * * *")
    assert expression.next_after(datetime(2026, 1, 1, 8, 59, 59, 999_999)) == datetime(2026, 1, 1, 9, 0)
    assert expression.next_after(datetime(2026, 1, 1, 9, 0)) == datetime(2026, 1, 1, 9, 0) + timedelta(minutes=1)
