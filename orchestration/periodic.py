"""The platform ticks: the handful of periodic jobs Celery beat runs in production (and the
embedded loop runs in-process, see ``config.embedded.SERVICES``). Never one entry per customer
schedule: the scheduler tick expands them all.

``manage.py setup_periodic_tasks`` writes these into django-celery-beat's tables (DatabaseScheduler),
idempotently. A tick whose task is not registered in :mod:`orchestration.tasks` is left out with a
warning rather than scheduled to fail.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlatformTick:
    name: str  # the PeriodicTask's unique name
    task: str  # the Celery task name
    every_seconds: int
    description: str


PLATFORM_TICKS: tuple[PlatformTick, ...] = (
    PlatformTick("flowdeck: schedule due runs", "orchestration.tasks.schedule_due_runs_task", 10,
                 "Materialise upcoming runs of every active schedule."),
    PlatformTick("flowdeck: mark late runs", "orchestration.tasks.mark_late_runs_task", 15,
                 "Rename due, unstarted SCHEDULED runs to Late."),
    PlatformTick("flowdeck: apply catch-up policy", "orchestration.tasks.apply_catchup_policy_task", 15,
                 "Skip missed runs per each flow's catch-up policy and max lateness."),
    # The reaper (Lazarus + Zombie-killer) and log retention: their services are
    # orchestration.services.reaper.reap_lost_runs and orchestration.services.logs.purge_expired_logs.
    PlatformTick("flowdeck: reap lost runs", "orchestration.tasks.reap_lost_runs_task", 30,
                 "Crash runs whose lease expired and retry them per policy."),
    PlatformTick("flowdeck: announce silent agents", "orchestration.tasks.announce_silent_agents_task", 15,
                 "Announce agents that went unhealthy or offline without a word."),
    PlatformTick("flowdeck: purge expired logs", "orchestration.tasks.purge_expired_logs_task", 3600,
                 "Delete log lines older than the retention period."),
)
