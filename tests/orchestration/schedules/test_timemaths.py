"""Schedule time maths (orchestration.schedules): fire times computed in the schedule's IANA zone,
DST-correct, bounded by start/end dates; bad expressions are InvalidInput."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.errors import InvalidInput
from orchestration.schedules import MIN_INTERVAL_SECONDS, ScheduleSpec, next_occurrence, occurrences, validate_spec

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def _local(times: list[datetime], tz: ZoneInfo) -> list[str]:
    return [t.astimezone(tz).strftime("%m-%d %H:%M %Z") for t in times]


# --- interval --------------------------------------------------------------------------------------


def test_daily_interval_keeps_local_time_across_spring_forward_in_berlin():
    # given a daily interval anchored at 09:00 Berlin (CET)
    spec = ScheduleSpec(kind="interval", interval_seconds=86400, anchor_date=datetime(2026, 3, 1, 9, tzinfo=BERLIN),
                        timezone="Europe/Berlin")
    # when the occurrences around the spring-forward of 2026-03-29 are computed
    times = occurrences(spec, after=datetime(2026, 3, 28, tzinfo=UTC),
                        until=datetime(2026, 3, 31, tzinfo=UTC), limit=10)
    # then each fires at 09:00 local, i.e. 08:00 UTC before and 07:00 UTC after the change
    assert _local(times, BERLIN) == ["03-28 09:00 CET", "03-29 09:00 CEST", "03-30 09:00 CEST"]
    assert [t.hour for t in times] == [8, 7, 7]
    assert all(t.tzinfo is UTC for t in times)


def test_daily_interval_keeps_local_time_across_fall_back_in_new_york():
    spec = ScheduleSpec(kind="interval", interval_seconds=86400, anchor_date=datetime(2026, 10, 1, 9, tzinfo=NEW_YORK),
                        timezone="America/New_York")
    times = occurrences(spec, after=datetime(2026, 10, 31, tzinfo=UTC),
                        until=datetime(2026, 11, 3, tzinfo=UTC), limit=10)
    assert _local(times, NEW_YORK) == ["10-31 09:00 EDT", "11-01 09:00 EST", "11-02 09:00 EST"]
    assert [t.hour for t in times] == [13, 14, 14]


def test_daily_interval_in_the_spring_forward_gap_moves_forward_by_the_gap():
    # 02:30 does not exist in Berlin on 2026-03-29: that day's run fires at 03:30 CEST instead of being lost
    spec = ScheduleSpec(kind="interval", interval_seconds=86400,
                        anchor_date=datetime(2026, 3, 1, 2, 30, tzinfo=BERLIN), timezone="Europe/Berlin")
    times = occurrences(spec, after=datetime(2026, 3, 28, tzinfo=UTC),
                        until=datetime(2026, 3, 31, tzinfo=UTC), limit=10)
    assert _local(times, BERLIN) == ["03-28 02:30 CET", "03-29 03:30 CEST", "03-30 02:30 CEST"]


def test_hourly_interval_is_absolute_time_across_fall_back():
    # given an hourly interval in New York
    spec = ScheduleSpec(kind="interval", interval_seconds=3600, anchor_date=datetime(2026, 11, 1, 0, tzinfo=NEW_YORK),
                        timezone="America/New_York")
    # when evaluated over the fall-back night (01:00 local happens twice)
    times = occurrences(spec, after=datetime(2026, 11, 1, 4, tzinfo=UTC),
                        until=datetime(2026, 11, 1, 8, tzinfo=UTC), limit=10)
    # then runs are exactly one hour apart: 01:00 EDT and 01:00 EST both fire
    assert all(b - a == timedelta(hours=1) for a, b in zip(times, times[1:], strict=False))
    assert _local(times, NEW_YORK) == ["11-01 00:00 EDT", "11-01 01:00 EDT", "11-01 01:00 EST", "11-01 02:00 EST",
                                       "11-01 03:00 EST"]


def test_interval_grid_is_aligned_to_the_anchor():
    spec = ScheduleSpec(kind="interval", interval_seconds=600, anchor_date=datetime(2026, 1, 1, 0, 3, tzinfo=UTC))
    times = occurrences(spec, after=datetime(2026, 5, 5, 12, 0, tzinfo=UTC),
                        until=datetime(2026, 5, 5, 12, 30, tzinfo=UTC), limit=10)
    assert [t.minute for t in times] == [3, 13, 23]


# --- cron ------------------------------------------------------------------------------------------


def test_cron_in_the_spring_forward_gap_is_skipped_in_berlin():
    spec = ScheduleSpec(kind="cron", cron="30 2 * * *", timezone="Europe/Berlin")
    times = occurrences(spec, after=datetime(2026, 3, 27, tzinfo=UTC),
                        until=datetime(2026, 3, 31, tzinfo=UTC), limit=10)
    # 2026-03-29 02:30 does not exist: no run that day
    assert _local(times, BERLIN) == ["03-27 02:30 CET", "03-28 02:30 CET", "03-30 02:30 CEST"]


def test_cron_in_the_ambiguous_fall_back_hour_fires_once_in_berlin():
    spec = ScheduleSpec(kind="cron", cron="30 2 * * *", timezone="Europe/Berlin")
    times = occurrences(spec, after=datetime(2026, 10, 24, tzinfo=UTC),
                        until=datetime(2026, 10, 27, tzinfo=UTC), limit=10)
    # 2026-10-25 02:30 happens twice (CEST then CET): one run, at the first
    assert _local(times, BERLIN) == ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"]


def test_cron_every_quarter_hour_over_fall_back_in_new_york_fires_each_local_time_once():
    spec = ScheduleSpec(kind="cron", cron="*/15 1 * * *", timezone="America/New_York")
    times = occurrences(spec, after=datetime(2026, 11, 1, tzinfo=UTC),
                        until=datetime(2026, 11, 2, tzinfo=UTC), limit=20)
    assert _local(times, NEW_YORK) == ["11-01 01:00 EDT", "11-01 01:15 EDT", "11-01 01:30 EDT", "11-01 01:45 EDT"]


def test_cron_weekday_mornings_keep_local_time_across_spring_forward_in_new_york():
    spec = ScheduleSpec(kind="cron", cron="0 9 * * 1-5", timezone="America/New_York")
    times = occurrences(spec, after=datetime(2026, 3, 6, tzinfo=UTC), until=datetime(2026, 3, 11, tzinfo=UTC), limit=10)
    assert _local(times, NEW_YORK) == ["03-06 09:00 EST", "03-09 09:00 EDT", "03-10 09:00 EDT"]


# --- rrule -----------------------------------------------------------------------------------------


def test_rrule_daily_keeps_local_time_across_spring_forward_in_new_york():
    spec = ScheduleSpec(kind="rrule", rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0", timezone="America/New_York",
                        anchor_date=datetime(2026, 1, 1, tzinfo=UTC))
    times = occurrences(spec, after=datetime(2026, 3, 7, tzinfo=UTC), until=datetime(2026, 3, 10, tzinfo=UTC), limit=10)
    assert _local(times, NEW_YORK) == ["03-07 09:00 EST", "03-08 09:00 EDT", "03-09 09:00 EDT"]


def test_rrule_in_gap_is_skipped_and_ambiguous_fires_once_in_berlin():
    spec = ScheduleSpec(kind="rrule", rrule="DTSTART:20260101T023000\nRRULE:FREQ=DAILY", timezone="Europe/Berlin")
    spring = occurrences(spec, after=datetime(2026, 3, 28, tzinfo=UTC),
                         until=datetime(2026, 3, 31, tzinfo=UTC), limit=10)
    fall = occurrences(spec, after=datetime(2026, 10, 24, tzinfo=UTC),
                       until=datetime(2026, 10, 27, tzinfo=UTC), limit=10)
    assert _local(spring, BERLIN) == ["03-28 02:30 CET", "03-30 02:30 CEST"]
    assert _local(fall, BERLIN) == ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"]


def test_rrule_count_ends_the_schedule():
    spec = ScheduleSpec(kind="rrule", rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=2",
                        anchor_date=datetime(2026, 6, 1, 8, tzinfo=UTC))
    times = occurrences(spec, after=datetime(2026, 1, 1, tzinfo=UTC), until=datetime(2027, 1, 1, tzinfo=UTC), limit=10)
    assert times == [datetime(2026, 6, 1, 8, tzinfo=UTC), datetime(2026, 6, 8, 8, tzinfo=UTC)]


# --- bounds ----------------------------------------------------------------------------------------


def test_start_and_end_dates_bound_occurrences_inclusively():
    spec = ScheduleSpec(kind="interval", interval_seconds=3600, anchor_date=datetime(2026, 1, 1, tzinfo=UTC),
                        start_date=datetime(2026, 1, 1, 3, tzinfo=UTC), end_date=datetime(2026, 1, 1, 5, tzinfo=UTC))
    times = occurrences(spec, after=datetime(2026, 1, 1, tzinfo=UTC), until=datetime(2026, 1, 2, tzinfo=UTC), limit=10)
    assert [t.hour for t in times] == [3, 4, 5]


def test_limit_and_window_cap_the_result():
    spec = ScheduleSpec(kind="cron", cron="* * * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert len(occurrences(spec, after=start, until=start + timedelta(hours=1), limit=10)) == 10
    assert len(occurrences(spec, after=start, until=start + timedelta(minutes=4), limit=10)) == 5
    assert next_occurrence(spec, after=start + timedelta(seconds=1)) == start + timedelta(minutes=1)


def test_schedule_past_its_end_has_no_occurrences():
    spec = ScheduleSpec(kind="cron", cron="0 * * * *", end_date=datetime(2025, 1, 1, tzinfo=UTC))
    assert occurrences(spec, after=datetime(2026, 1, 1, tzinfo=UTC),
                       until=datetime(2026, 2, 1, tzinfo=UTC), limit=10) == []


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (ScheduleSpec(kind="cron", cron="61 * * * *"), "cron"),
        (ScheduleSpec(kind="cron", cron="every day"), "cron"),
        (ScheduleSpec(kind="cron", cron="0 0 30 2 *"), "cron"),
        (ScheduleSpec(kind="cron", cron="0 0 * * * *"), "cron"),
        (ScheduleSpec(kind="rrule", rrule="FREQ=SOMETIMES"), "rrule"),
        # the same 10-second floor as interval schedules, however the rule gets there
        (ScheduleSpec(kind="rrule", rrule="FREQ=SECONDLY"), "rrule"),
        (ScheduleSpec(kind="rrule", rrule="FREQ=SECONDLY;INTERVAL=9"), "rrule"),
        (ScheduleSpec(kind="rrule", rrule="FREQ=MINUTELY;BYSECOND=0,5"), "rrule"),
        (ScheduleSpec(kind="rrule", rrule="FREQ=HOURLY;BYMINUTE=0;BYSECOND=0,30,31"), "rrule"),
        (ScheduleSpec(kind="rrule", rrule=""), "rrule"),
        (ScheduleSpec(kind="rrule", rrule="DTSTART;TZID=Europe/Berlin:20260101T090000\nRRULE:FREQ=DAILY"), "rrule"),
        (ScheduleSpec(kind="interval", interval_seconds=MIN_INTERVAL_SECONDS - 1), "interval_seconds"),
        (ScheduleSpec(kind="interval", interval_seconds=None), "interval_seconds"),
        (ScheduleSpec(kind="interval", interval_seconds=60, timezone="Mars/Olympus_Mons"), "timezone"),
        (ScheduleSpec(kind="interval", interval_seconds=60, cron="* * * * *"), "kind"),
        (ScheduleSpec(kind="weekly"), "kind"),
        (ScheduleSpec(kind="interval", interval_seconds=60, start_date=datetime(2026, 2, 1, tzinfo=UTC),
                      end_date=datetime(2026, 1, 1, tzinfo=UTC)), "end_date"),
        (ScheduleSpec(kind="interval", interval_seconds=60, anchor_date=datetime(2026, 1, 1)), "anchor_date"),
    ],
)
def test_bad_schedules_are_invalid_input_naming_the_field(spec, field):
    with pytest.raises(InvalidInput) as error:
        validate_spec(spec)
    assert field in error.value.details
    assert error.value.message


def test_valid_schedules_pass_validation():
    validate_spec(ScheduleSpec(kind="cron", cron="0 9 * * 1-5", timezone="America/New_York"))
    validate_spec(ScheduleSpec(kind="rrule", rrule="FREQ=DAILY;BYHOUR=9", timezone="Europe/Berlin"))
    validate_spec(ScheduleSpec(kind="interval", interval_seconds=MIN_INTERVAL_SECONDS))
    validate_spec(ScheduleSpec(kind="rrule", rrule=f"FREQ=SECONDLY;INTERVAL={MIN_INTERVAL_SECONDS}"))
    validate_spec(ScheduleSpec(kind="rrule", rrule="FREQ=MINUTELY;BYSECOND=0,30"))


def test_cron_evaluated_from_inside_the_repeated_hour_resumes_after_it():
    # 01:10 UTC on 2026-10-25 is 02:10 CET, the second pass through 02:xx in Berlin: the quarter hours
    # of 02:xx already fired during the first pass, so the next run is 03:00 CET
    spec = ScheduleSpec(kind="cron", cron="*/15 * * * *", timezone="Europe/Berlin")
    times = occurrences(spec, after=datetime(2026, 10, 25, 1, 10, tzinfo=UTC),
                        until=datetime(2026, 10, 25, 3, tzinfo=UTC), limit=2)
    assert times == [datetime(2026, 10, 25, 2, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 15, tzinfo=UTC)]


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MINUTELY;INTERVAL=7;BYHOUR=9,10",
        "FREQ=HOURLY;INTERVAL=5",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;BYHOUR=8;BYMINUTE=15",
        "DTSTART:20240229T013000\nRRULE:FREQ=DAILY;INTERVAL=3",
        "FREQ=MINUTELY;INTERVAL=13;UNTIL=20270101T000000",
    ],
)
@pytest.mark.parametrize("tz_name", ["UTC", "Europe/Berlin"])
def test_rrule_evaluation_far_from_dtstart_matches_dateutil_from_the_start(rule, tz_name):
    # given a rule started two years before the evaluated window (the evaluation skips ahead)
    from dateutil.rrule import rrulestr

    tz = ZoneInfo(tz_name)
    anchor = datetime(2024, 3, 1, 0, 0, 11, tzinfo=UTC)
    spec = ScheduleSpec(kind="rrule", rrule=rule, anchor_date=anchor, timezone=tz_name)
    after, until = datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
    # when evaluated
    times = occurrences(spec, after=after, until=until, limit=1000)
    # then it equals dateutil walking from DTSTART, resolved the documented way (gaps skipped)
    naive = rrulestr(rule, dtstart=anchor.astimezone(tz).replace(tzinfo=None)).between(
        after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3),
        until.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3), inc=True)
    expected = []
    for moment in naive:
        resolved = moment.replace(tzinfo=tz).astimezone(UTC)
        if resolved.astimezone(tz).replace(tzinfo=None) == moment and after <= resolved <= until:
            expected.append(resolved)
    assert times == expected
    assert times or rule.startswith("FREQ=WEEKLY")
