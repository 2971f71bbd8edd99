"""Clocks: their arguments, time zones, bounds and events (Prefect 1's ``prefect.schedules.clocks``)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from flowdeck.schedules import clocks
from flowdeck.schedules.clocks import ClockEvent, CronClock, DatesClock, IntervalClock

PARIS = ZoneInfo("Europe/Paris")


def first(clock: clocks.Clock, count: int, after: datetime) -> list[datetime]:
    return [event.start_time for event in itertools.islice(clock.events(after=after), count)]


class TestIntervalClock:
    def test_fires_every_interval_from_the_start_date_and_the_start_date_is_included(self) -> None:
        clock = IntervalClock(timedelta(minutes=15), start_date=datetime(2026, 5, 1, 10, 5, tzinfo=UTC))
        assert first(clock, 3, datetime(2026, 1, 1, tzinfo=UTC)) == [
            datetime(2026, 5, 1, 10, 5, tzinfo=UTC), datetime(2026, 5, 1, 10, 20, tzinfo=UTC),
            datetime(2026, 5, 1, 10, 35, tzinfo=UTC)]

    def test_events_are_strictly_after_after(self) -> None:
        clock = IntervalClock(timedelta(hours=1), start_date=datetime(2026, 1, 1, tzinfo=UTC))
        assert first(clock, 1, datetime(2026, 2, 1, 5, tzinfo=UTC)) == [datetime(2026, 2, 1, 6, tzinfo=UTC)]
        assert first(clock, 1, datetime(2026, 2, 1, 5, 0, 0, 1, tzinfo=UTC)) == [datetime(2026, 2, 1, 6, tzinfo=UTC)]

    def test_without_a_start_date_the_grid_is_anchored_at_2019_in_the_clocks_zone(self) -> None:
        utc_clock = IntervalClock(timedelta(hours=7))
        assert utc_clock.anchor == datetime(2019, 1, 1, tzinfo=UTC)
        after = datetime(2026, 1, 1, tzinfo=UTC)
        expected = datetime(2019, 1, 1, tzinfo=UTC) + ((after - datetime(2019, 1, 1, tzinfo=UTC)) // timedelta(hours=7)
                                                       + 1) * timedelta(hours=7)
        assert first(utc_clock, 1, after) == [expected]
        paris_daily = IntervalClock(timedelta(days=1), timezone="Europe/Paris")
        before_paris_midnight = datetime(2025, 12, 31, 22, tzinfo=UTC)
        assert [d.isoformat() for d in first(paris_daily, 1, before_paris_midnight)] == ["2026-01-01T00:00:00+01:00"]

    def test_the_end_date_is_included_and_ends_the_clock(self) -> None:
        clock = IntervalClock(timedelta(days=1), start_date=datetime(2026, 1, 1, tzinfo=UTC),
                              end_date=datetime(2026, 1, 3, tzinfo=UTC))
        assert first(clock, 10, datetime(2025, 1, 1, tzinfo=UTC)) == [
            datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
        assert first(clock, 10, datetime(2026, 1, 3, tzinfo=UTC)) == []

    def test_interval_must_be_a_positive_timedelta(self) -> None:
        with pytest.raises(TypeError, match="timedelta"):
            IntervalClock(3600)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive"):
            IntervalClock(timedelta(0))

    def test_end_before_start_is_refused(self) -> None:
        with pytest.raises(ValueError, match="before its start_date"):
            IntervalClock(timedelta(hours=1), start_date=datetime(2026, 2, 1), end_date=datetime(2026, 1, 1))

    def test_sub_daily_intervals_count_elapsed_time_across_dst(self) -> None:
        clock = IntervalClock(timedelta(hours=1), start_date=datetime(2026, 3, 29, 0, 0, tzinfo=PARIS))
        local = [d.isoformat() for d in first(clock, 4, datetime(2026, 3, 28, 23, 30, tzinfo=PARIS))]
        assert local == ["2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00",
                         "2026-03-29T04:00:00+02:00"]


class TestTimeZones:
    def test_an_aware_start_date_sets_the_zone(self) -> None:
        clock = IntervalClock(timedelta(days=1), start_date=datetime(2026, 1, 1, 9, tzinfo=PARIS))
        assert clock.timezone == "Europe/Paris"
        summer = first(clock, 1, datetime(2026, 7, 1, tzinfo=UTC))[0]
        assert summer.tzinfo == PARIS and (summer.hour, summer.utcoffset()) == (9, timedelta(hours=2))

    def test_the_timezone_keyword_reads_naive_dates_as_local_times(self) -> None:
        clock = CronClock("0 9 * * *", start_date=datetime(2026, 1, 1, 9), timezone="America/New_York")
        assert clock.start_date == datetime(2026, 1, 1, 9, tzinfo=ZoneInfo("America/New_York"))
        assert first(clock, 1, datetime(2025, 1, 1, tzinfo=UTC))[0].isoformat() == "2026-01-01T09:00:00-05:00"

    def test_naive_dates_without_a_zone_are_utc(self) -> None:
        clock = IntervalClock(timedelta(hours=12), start_date=datetime(2026, 1, 1, 6))
        assert clock.timezone == "UTC"
        assert first(clock, 1, datetime(2025, 1, 1))[0] == datetime(2026, 1, 1, 6, tzinfo=UTC)

    def test_an_aware_date_in_another_zone_keeps_its_instant(self) -> None:
        clock = IntervalClock(timedelta(days=1), start_date=datetime(2026, 1, 1, 8, tzinfo=UTC), timezone=PARIS)
        assert clock.start_date is not None and clock.start_date.isoformat() == "2026-01-01T09:00:00+01:00"

    def test_fixed_offsets_of_whole_hours_become_etc_zones(self) -> None:
        clock = CronClock("0 * * * *", start_date=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))))
        assert clock.timezone == "Etc/GMT-2"
        assert IntervalClock(timedelta(hours=1), start_date=datetime(2026, 1, 1, tzinfo=UTC)).timezone == "UTC"

    def test_unknown_zones_and_odd_offsets_are_refused_with_advice(self) -> None:
        with pytest.raises(ValueError, match="not a known IANA time zone"):
            CronClock("0 * * * *", timezone="Mars/Olympus")
        with pytest.raises(ValueError, match="ZoneInfo"):
            CronClock("0 * * * *", start_date=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))))


class TestCronClock:
    def test_fires_on_local_wall_clock_matches_within_its_dates(self) -> None:
        clock = CronClock("0 9 * * MON-FRI", start_date=datetime(2026, 6, 5, tzinfo=PARIS),
                          end_date=datetime(2026, 6, 9, 9, tzinfo=PARIS))
        assert [d.isoformat() for d in first(clock, 10, datetime(2026, 1, 1, tzinfo=UTC))] == [
            "2026-06-05T09:00:00+02:00", "2026-06-08T09:00:00+02:00", "2026-06-09T09:00:00+02:00"]

    def test_an_invalid_expression_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="five fields"):
            CronClock("every day")

    def test_day_or_false_joins_day_and_weekday_with_and(self) -> None:
        clock = CronClock("0 9 1-7 * FRI", day_or=False, timezone="UTC")
        assert first(clock, 2, datetime(2026, 1, 1, tzinfo=UTC)) == [
            datetime(2026, 1, 2, 9, tzinfo=UTC), datetime(2026, 2, 6, 9, tzinfo=UTC)]


def test_events_carry_the_clocks_parameters_and_labels() -> None:
    clock = CronClock("0 0 * * *", parameter_defaults={"x": 1}, labels=["prod"])
    event = next(clock.events(after=datetime(2026, 1, 1, tzinfo=UTC)))
    assert isinstance(event, ClockEvent)
    assert (event.start_time, event.parameter_defaults, event.labels) == (
        datetime(2026, 1, 2, tzinfo=UTC), {"x": 1}, ["prod"])


def test_clock_events_compare_by_instant_even_in_the_repeated_autumn_hour() -> None:
    new_york = ZoneInfo("America/New_York")
    first_one_am = datetime(2026, 11, 1, 5, tzinfo=UTC).astimezone(new_york)
    second_one_am = datetime(2026, 11, 1, 6, tzinfo=UTC).astimezone(new_york)
    assert first_one_am == second_one_am  # Python compares same-zone times by wall clock...
    assert ClockEvent(first_one_am) != ClockEvent(second_one_am)  # ...events by instant
    assert ClockEvent(first_one_am) < ClockEvent(second_one_am)
    assert ClockEvent(second_one_am) == datetime(2026, 11, 1, 6, tzinfo=UTC)


@time_machine.travel(datetime(2026, 4, 10, 12, 7, tzinfo=UTC), tick=False)
def test_events_start_from_now_by_default() -> None:
    clock = IntervalClock(timedelta(minutes=10), start_date=datetime(2026, 1, 1, tzinfo=UTC))
    assert next(clock.events()).start_time == datetime(2026, 4, 10, 12, 10, tzinfo=UTC)


def test_dates_clock_fires_on_its_dates_only() -> None:
    clock = DatesClock([datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 1, 12), datetime(2026, 5, 2, tzinfo=UTC)])
    assert first(clock, 5, datetime(2026, 1, 1, tzinfo=UTC)) == [
        datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)]
    assert first(clock, 5, datetime(2026, 5, 1, 12, tzinfo=UTC)) == [datetime(2026, 5, 2, tzinfo=UTC)]


def test_clocks_describe_themselves() -> None:
    assert repr(CronClock("0 9 * * *", timezone="Europe/Paris")) == (
        "CronClock(cron='0 9 * * *', timezone='Europe/Paris')"
    )
    assert "interval=datetime.timedelta(seconds=3600)" in repr(IntervalClock(timedelta(hours=1)))
