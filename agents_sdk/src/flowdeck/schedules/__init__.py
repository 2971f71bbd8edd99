"""When flows run: schedules made of clocks, as in Prefect 1 (``prefect.schedules``).

    from datetime import timedelta
    from flowdeck.schedules import CronSchedule, IntervalSchedule, Schedule, clocks

    daily = IntervalSchedule(interval=timedelta(days=1), timezone="Europe/Paris")
    weekdays = CronSchedule("0 9 * * MON-FRI", timezone="America/New_York")
    both = Schedule(clocks=[clocks.CronClock("0 6 * * *"), clocks.IntervalClock(timedelta(hours=4))])
    both.next(5)
"""

from __future__ import annotations

from flowdeck.schedules import adjustments, clocks, filters
from flowdeck.schedules.schedules import CronSchedule, IntervalSchedule, Schedule, union

__all__ = ["CronSchedule", "IntervalSchedule", "Schedule", "adjustments", "clocks", "filters", "union"]
