"""What ``Schedule.serialize()`` registers is accepted by the server, and the server then computes the
very times ``schedule.next()`` shows, around the DST changes of 2026 in Paris and New York.

The server side is the real code a registration goes through: the clock keys it allows, its date
parsing (``_clock_dates``), its normalisation and validation (``_normalise`` → ``validate_spec``) and its
time maths (``occurrences``). Importing the server here is fine: only the SDK must never do it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdeck.schedules import CronSchedule, IntervalSchedule, Schedule, clocks
from orchestration import schedules as server
from orchestration.services.schedules import _SPEC_FIELDS, REGISTRATION_CLOCK_KEYS, _clock_dates, _normalise

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")

# The instants of the 2026 DST changes: Paris springs forward at 01:00 UTC on 29 March and falls back
# at 01:00 UTC on 25 October; New York at 07:00 UTC on 8 March and 06:00 UTC on 1 November.
TRANSITIONS = [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),
               datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC)]
OFFSETS = [timedelta(days=-3), timedelta(days=-1), timedelta(hours=-2), timedelta(minutes=-30), timedelta(0),
           timedelta(minutes=30), timedelta(hours=1, seconds=1), timedelta(days=1)]
AFTERS = [t + o for t in TRANSITIONS for o in OFFSETS] + [datetime(2026, 1, 1, tzinfo=UTC)]


def server_spec(clock: dict[str, Any]) -> server.ScheduleSpec:
    """The clock as the server stores it, through the same steps as a flow registration."""
    assert isinstance(clock, dict) and "kind" in clock
    assert set(clock) <= REGISTRATION_CLOCK_KEYS, set(clock) - REGISTRATION_CLOCK_KEYS
    fields = {k: v for k, v in clock.items() if k not in ("anchor_date", "start_date", "end_date", "parameters")}
    fields.update(_clock_dates(clock, 0))
    for name in ("kind", "interval_seconds", "anchor_date", "cron", "rrule", "timezone", "start_date", "end_date"):
        fields.setdefault(name, None)
    normalised = _normalise(fields)  # validates with orchestration.schedules.validate_spec
    return server.ScheduleSpec(**{k: normalised[k] for k in _SPEC_FIELDS})


def utc(moments: list[datetime]) -> list[datetime]:
    # Compared in UTC: an ambiguous local time (the repeated autumn hour) never equals a UTC datetime
    # in Python (PEP 495), even at the same instant.
    return [moment.astimezone(UTC) for moment in moments]


def server_times(spec: server.ScheduleSpec, after: datetime, count: int = 10) -> list[datetime]:
    return server.occurrences(spec, after=after, until=after + timedelta(days=800), limit=count)


SCHEDULES: dict[str, Schedule] = {
    # Whole days: wall-clock days, the spring gap moves forward, the autumn repeat fires once.
    "daily 02:30 Paris": IntervalSchedule(interval=timedelta(days=1), start_date=datetime(2026, 1, 1, 2, 30),
                                          timezone="Europe/Paris"),
    "daily 02:30 New York": IntervalSchedule(interval=timedelta(days=1),
                                             start_date=datetime(2026, 1, 1, 2, 30, tzinfo=NEW_YORK)),
    "daily 01:30 New York": IntervalSchedule(interval=timedelta(days=1),
                                             start_date=datetime(2025, 12, 1, 1, 30, tzinfo=NEW_YORK)),
    "every 3 days 02:15 Paris": IntervalSchedule(interval=timedelta(days=3),
                                                 start_date=datetime(2026, 2, 1, 2, 15, tzinfo=PARIS)),
    "weekly Paris, default anchor": IntervalSchedule(interval=timedelta(weeks=1), timezone="Europe/Paris"),
    # Anything else: elapsed time.
    "hourly Paris": IntervalSchedule(interval=timedelta(hours=1), start_date=datetime(2026, 1, 1, 0, 20, tzinfo=PARIS)),
    "90 min New York": IntervalSchedule(interval=timedelta(minutes=90),
                                        start_date=datetime(2026, 1, 1, 0, 10, tzinfo=NEW_YORK)),
    "25 h Paris": IntervalSchedule(interval=timedelta(hours=25), start_date=datetime(2026, 1, 1, 2, 30, tzinfo=PARIS)),
    "45 s UTC": IntervalSchedule(interval=timedelta(seconds=45)),
    "bounded 2 h New York": IntervalSchedule(interval=timedelta(hours=2),
                                             start_date=datetime(2026, 3, 7, 1, 0, tzinfo=NEW_YORK),
                                             end_date=datetime(2026, 11, 1, 3, 0, tzinfo=NEW_YORK)),
    # Cron: local wall-clock matches; the gap is skipped, the repeat fires once.
    "cron 30 2 Paris": CronSchedule("30 2 * * *", timezone="Europe/Paris"),
    "cron hourly New York": CronSchedule("0 * * * *", timezone="America/New_York"),
    "cron */30 1-3 Paris": CronSchedule("*/30 1-3 * * *", timezone="Europe/Paris"),
    "cron */30 0-3 New York": CronSchedule("*/30 0-3 * * *", start_date=datetime(2026, 2, 1, tzinfo=NEW_YORK)),
    "cron weekdays 9 Paris": CronSchedule("0 9 * * MON-FRI", start_date=datetime(2026, 1, 1, tzinfo=PARIS)),
    "cron @daily New York": CronSchedule("@daily", timezone="America/New_York"),
    "cron 1st at 01:15 or Sundays Paris": CronSchedule("15 1 1 * SUN", timezone="Europe/Paris",
                                                       end_date=datetime(2026, 12, 31, tzinfo=PARIS)),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_serialized_clocks_pass_the_servers_registration_checks(name: str) -> None:
    serialized = SCHEDULES[name].serialize()
    assert list(serialized) == ["clocks"] and len(serialized["clocks"]) == 1
    clock = serialized["clocks"][0]
    spec = server_spec(clock)
    assert spec.timezone == SCHEDULES[name].clocks[0].timezone
    assert clock["parameters"] == {}


@pytest.mark.parametrize("name", SCHEDULES)
def test_next_shows_exactly_the_times_the_server_computes_around_dst(name: str) -> None:
    schedule = SCHEDULES[name]
    clock = schedule.clocks[0]
    spec = server_spec(schedule.serialize()["clocks"][0])
    for after in AFTERS:
        expected = server_times(spec, after + timedelta(microseconds=1))  # next() is strictly after
        shown = schedule.next(10, after=after)
        assert utc(shown) == expected, (name, after)
        assert all(moment.tzinfo == clock.zone for moment in shown)
        # The inclusive form is the server's own bound.
        assert utc(list(itertools.islice(clock.times(after, inclusive=True), 10))) == server_times(spec, after)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(SCHEDULES)),
       after=st.datetimes(datetime(2025, 12, 1), datetime(2027, 1, 1), timezones=st.just(UTC)))
def test_next_agrees_with_the_server_from_any_instant(name: str, after: datetime) -> None:
    schedule = SCHEDULES[name]
    spec = server_spec(schedule.serialize()["clocks"][0])
    assert utc(schedule.next(10, after=after)) == server_times(spec, after + timedelta(microseconds=1))


def test_dst_behaviour_in_local_times() -> None:
    """The rules spelled out in local wall-clock times, for a reader."""
    after = datetime(2026, 3, 27, 12, tzinfo=PARIS)
    daily = SCHEDULES["daily 02:30 Paris"].next(3, after=after)
    assert [d.isoformat() for d in daily] == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]
    cron = SCHEDULES["cron 30 2 Paris"].next(2, after=after)
    assert [d.isoformat() for d in cron] == ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00"]
    hourly = IntervalSchedule(interval=timedelta(hours=1), timezone="America/New_York").next(
        4, after=datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK))
    assert [d.isoformat() for d in hourly] == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00"]
    cron_hourly = SCHEDULES["cron hourly New York"].next(3, after=datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK))
    assert [d.isoformat() for d in cron_hourly] == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]


def test_a_schedule_of_several_clocks_registers_each_clock_with_its_parameters() -> None:
    schedule = Schedule(clocks=[
        clocks.CronClock("0 6 * * *", timezone="Europe/Paris", parameter_defaults={"region": "eu"}),
        clocks.IntervalClock(timedelta(hours=4), start_date=datetime(2026, 1, 1, tzinfo=NEW_YORK),
                             parameter_defaults={"region": "us"}),
    ])
    serialized = schedule.serialize()
    assert [clock["parameters"] for clock in serialized["clocks"]] == [{"region": "eu"}, {"region": "us"}]
    specs = [server_spec(clock) for clock in serialized["clocks"]]
    after = datetime(2026, 3, 1, tzinfo=UTC)
    merged = sorted(t for spec in specs for t in server_times(spec, after + timedelta(microseconds=1)))
    events = schedule.next(12, after=after, return_events=True)
    assert utc([event.start_time for event in events]) == merged[:12]
    assert {event.parameter_defaults["region"] for event in events} == {"eu", "us"}


def test_start_and_end_dates_are_sent_with_their_offsets() -> None:
    schedule = CronSchedule("0 12 * * *", start_date=datetime(2026, 6, 1, tzinfo=PARIS),
                            end_date=datetime(2026, 6, 3, 12, tzinfo=PARIS))
    clock = schedule.serialize()["clocks"][0]
    assert clock["start_date"] == "2026-06-01T00:00:00+02:00"
    assert clock["end_date"] == "2026-06-03T12:00:00+02:00"
    spec = server_spec(clock)
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert utc(schedule.next(10, after=after)) == server_times(spec, after) == [
        datetime(2026, 6, d, 12, tzinfo=PARIS) for d in (1, 2, 3)]
