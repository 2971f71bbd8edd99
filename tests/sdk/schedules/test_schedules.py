"""Schedules: merging clocks, filters and adjustments, Prefect 1's helpers, and what can be registered."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from flowdeck.schedules import CronSchedule, IntervalSchedule, Schedule, adjustments, clocks, filters, union

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def test_prefect_style_schedule_of_clocks_merges_their_events_in_order() -> None:
    schedule = Schedule(clocks=[
        clocks.IntervalClock(timedelta(hours=12), start_date=JAN_1),
        clocks.CronClock("0 6 * * *"),
    ])
    assert schedule.next(4, after=JAN_1) == [
        datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 1, 12, tzinfo=UTC),
        datetime(2026, 1, 2, 0, tzinfo=UTC), datetime(2026, 1, 2, 6, tzinfo=UTC)]


def test_the_same_run_from_two_clocks_is_shown_once_but_runs_with_different_parameters_are_kept() -> None:
    same = Schedule(clocks=[clocks.CronClock("0 * * * *"), clocks.IntervalClock(timedelta(hours=2), start_date=JAN_1)])
    assert same.next(3, after=JAN_1) == [JAN_1 + timedelta(hours=h) for h in (1, 2, 3)]
    different = Schedule(clocks=[clocks.CronClock("0 0 * * *", parameter_defaults={"n": 1}),
                                 clocks.CronClock("0 0 * * *", parameter_defaults={"n": 2})])
    events = different.next(2, after=JAN_1, return_events=True)
    assert [(e.start_time, e.parameter_defaults) for e in events] == [
        (datetime(2026, 1, 2, tzinfo=UTC), {"n": 1}), (datetime(2026, 1, 2, tzinfo=UTC), {"n": 2})]


def test_interval_and_cron_schedule_helpers() -> None:
    hourly = IntervalSchedule(start_date=JAN_1, interval=timedelta(hours=1), end_date=JAN_1 + timedelta(hours=2))
    assert hourly.next(5, after=datetime(2025, 1, 1, tzinfo=UTC)) == [JAN_1 + timedelta(hours=h) for h in (0, 1, 2)]
    assert hourly.start_date == JAN_1 and hourly.end_date == JAN_1 + timedelta(hours=2)
    weekdays = CronSchedule("0 9 * * 1-5", timezone="Europe/Paris")
    assert [d.isoformat() for d in weekdays.next(2, after=JAN_1)] == [
        "2026-01-01T09:00:00+01:00", "2026-01-02T09:00:00+01:00"]
    with pytest.raises(TypeError, match="needs an interval"):
        IntervalSchedule(start_date=JAN_1)


def test_filters_and_adjustments() -> None:
    schedule = Schedule(
        clocks=[clocks.IntervalClock(timedelta(hours=6), start_date=JAN_1)],
        filters=[filters.is_weekday, filters.between_times(time(6), time(12))],
        not_filters=[filters.at_time(time(12))],
        adjustments=[adjustments.add(timedelta(minutes=5))],
    )
    # Thursday and Friday at 06:00 (12:00 is excluded), then the weekend is skipped.
    assert schedule.next(3, after=JAN_1) == [datetime(2026, 1, d, 6, 5, tzinfo=UTC) for d in (1, 2, 5)]
    moved = Schedule(clocks=[clocks.CronClock("0 8 * * *")], filters=[filters.is_weekend],
                     adjustments=[adjustments.next_weekday])
    # Saturday's and Sunday's events both move to Monday 08:00: one run.
    assert moved.next(2, after=JAN_1) == [datetime(2026, 1, 5, 8, tzinfo=UTC), datetime(2026, 1, 12, 8, tzinfo=UTC)]
    either = Schedule(clocks=[clocks.CronClock("0 0 * * *")], or_filters=[filters.is_month_start, filters.is_month_end])
    assert either.next(3, after=JAN_1) == [datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC),
                                           datetime(2026, 2, 28, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("check", "yes", "no"),
    [
        (filters.on_datetime(JAN_1), JAN_1, JAN_1 + timedelta(seconds=1)),
        (filters.on_date(2, 29), datetime(2028, 2, 29), datetime(2028, 3, 1)),
        (filters.between_datetimes(JAN_1, JAN_1 + timedelta(days=1)), JAN_1 + timedelta(days=1), JAN_1 - timedelta(1)),
        (filters.between_times(time(22), time(2)), datetime(2026, 1, 1, 1), datetime(2026, 1, 1, 3)),
        (filters.between_dates(12, 20, 1, 5), datetime(2026, 1, 3), datetime(2026, 2, 3)),
        (filters.between_dates(3, 1, 3, 31), datetime(2026, 3, 15), datetime(2026, 4, 1)),
        (filters.is_day_of_week(6), datetime(2026, 1, 4), datetime(2026, 1, 5)),
        (filters.is_weekend, datetime(2026, 1, 3), datetime(2026, 1, 2)),
        (filters.is_month_end, datetime(2026, 2, 28), datetime(2028, 2, 28)),
    ],
)
def test_each_filter(check: filters.Filter, yes: datetime, no: datetime) -> None:
    assert check(yes) and not check(no)


def test_adjusting_into_a_dst_gap_gives_the_real_instant() -> None:
    paris = ZoneInfo("Europe/Paris")
    moved = adjustments.add(timedelta(hours=1))(datetime(2026, 3, 29, 1, 30, tzinfo=paris))
    assert moved.isoformat() == "2026-03-29T03:30:00+02:00"


def test_a_search_that_never_finds_stops_after_ten_thousand_events() -> None:
    never = Schedule(clocks=[clocks.CronClock("* * * * *")], filters=[lambda moment: False])
    assert never.next(1, after=JAN_1) == []


@time_machine.travel(datetime(2026, 7, 14, 9, 30, tzinfo=UTC), tick=False)
def test_next_starts_from_now_by_default() -> None:
    assert CronSchedule("0 * * * *").next(2) == [datetime(2026, 7, 14, h, tzinfo=UTC) for h in (10, 11)]


def test_union_runs_whenever_any_schedule_runs() -> None:
    morning = CronSchedule("0 6 * * *")
    evening = CronSchedule("0 18 * * *")
    both = union(morning, evening)
    assert both.next(3, after=JAN_1) == [datetime(2026, 1, 1, 6, tzinfo=UTC), datetime(2026, 1, 1, 18, tzinfo=UTC),
                                         datetime(2026, 1, 2, 6, tzinfo=UTC)]
    assert len(both.serialize()["clocks"]) == 2
    with pytest.raises(ValueError, match="filters or adjustments"):
        union(morning, Schedule(clocks=[clocks.CronClock("0 0 * * *")], filters=[filters.is_weekday]))
    with pytest.raises(ValueError, match="at least one"):
        union()


def test_a_schedule_needs_a_list_of_clocks() -> None:
    with pytest.raises(TypeError, match="list of clocks"):
        Schedule(clocks=clocks.CronClock("0 0 * * *"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one clock"):
        Schedule(clocks=[])
    with pytest.raises(TypeError, match="is not a clock"):
        Schedule(clocks=["0 0 * * *"])  # type: ignore[list-item]


class TestWhatCannotBeRegistered:
    def test_filters_and_adjustments(self) -> None:
        schedule = Schedule(clocks=[clocks.CronClock("0 9 * * *")], filters=[filters.is_weekday])
        with pytest.raises(ValueError, match=r"has filters, which it cannot reproduce.*'0 9 \* \* 1-5'"):
            schedule.serialize()

    @pytest.mark.parametrize(
        ("interval", "message"),
        [(timedelta(seconds=5), "every 10 s to 366 days"), (timedelta(days=400), "every 10 s to 366 days"),
         (timedelta(seconds=90.5), "whole seconds")],
    )
    def test_intervals_the_server_does_not_run(self, interval: timedelta, message: str) -> None:
        schedule = IntervalSchedule(interval=interval)
        assert schedule.next(1, after=JAN_1)  # fine locally
        with pytest.raises(ValueError, match=message):
            schedule.serialize()

    def test_cron_with_day_or_false_and_both_day_fields(self) -> None:
        with pytest.raises(ValueError, match="day_or=False cannot be registered"):
            CronSchedule("0 9 1-7 * FRI", day_or=False).serialize()
        # With one of the day fields left open, day_or changes nothing and registers fine.
        assert CronSchedule("0 9 * * FRI", day_or=False).serialize()["clocks"][0]["cron"] == "0 9 * * FRI"

    def test_dates_clocks(self) -> None:
        with pytest.raises(ValueError, match="use an IntervalClock or a CronClock"):
            Schedule(clocks=[clocks.DatesClock([JAN_1])]).serialize()

    def test_clock_labels_are_registered_without_labels_and_the_user_is_warned(self) -> None:
        schedule = Schedule(clocks=[clocks.CronClock("0 0 * * *", labels=["gpu"])])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            serialized = schedule.serialize()
        assert "labels" not in serialized["clocks"][0]
        assert any("not stored by the Flowdeck server" in str(w.message) for w in caught)


def test_macros_are_registered_as_five_fields() -> None:
    assert CronSchedule("@daily").serialize()["clocks"][0]["cron"] == "0 0 * * *"
    assert CronSchedule("  0   9 * *  mon-fri ").serialize()["clocks"][0]["cron"] == "0 9 * * mon-fri"
