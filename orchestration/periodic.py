"""The platform ticks: the handful of periodic jobs Celery beat runs in production (and the
embedded loop runs in-process, see ``config.embedded.SERVICES``). Never one entry per customer
schedule: the scheduler tick expands them all.

:func:`install_platform_ticks` writes these into django-celery-beat's tables (DatabaseScheduler),
idempotently. It runs after every ``migrate`` (a ``post_migrate`` hook, see
:mod:`orchestration.apps`), every time Celery beat starts (``beat_init``, see :mod:`config.celery`)
and from ``manage.py setup_periodic_tasks``, so a deployment cannot end up with a beat that has
nothing to run. A tick whose task is not registered in :mod:`orchestration.tasks` is left out with
a warning rather than scheduled to fail.

``FLOWDECK_PLATFORM_TICK_SECONDS`` (tests only) installs every tick with that interval instead of
its own, so the fault suite's reaper and scheduler react within a second or two.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("flowdeck.periodic")

PREFIX = "flowdeck: "
TICK_SECONDS_ENV = "FLOWDECK_PLATFORM_TICK_SECONDS"


TASKS_MODULE = "orchestration.tasks"


def task_name(service_name: str) -> str:
    """The Celery task a platform tick's service is registered as (see :mod:`orchestration.tasks`)."""
    return f"{TASKS_MODULE}.{service_name}_task"


@dataclass(frozen=True)
class PlatformTick:
    name: str  # the PeriodicTask's unique name
    service: str  # the service function's dotted path: it takes no arguments
    every_seconds: int
    description: str

    @property
    def task(self) -> str:
        """The Celery task name beat schedules."""
        return task_name(self.service.rsplit(".", 1)[-1])


# The one list of platform ticks: Celery beat schedules their tasks, the embedded loop
# (``config.embedded.SERVICES``) calls their services.
PLATFORM_TICKS: tuple[PlatformTick, ...] = (
    PlatformTick("flowdeck: schedule due runs", "orchestration.services.scheduler.schedule_due_runs", 10,
                 "Materialise upcoming runs of every active schedule."),
    PlatformTick("flowdeck: mark late runs", "orchestration.services.late_runs.mark_late_runs", 15,
                 "Rename due, unstarted SCHEDULED runs to Late."),
    PlatformTick("flowdeck: apply catch-up policy", "orchestration.services.late_runs.apply_catchup_policy", 15,
                 "Skip missed runs per each flow's catch-up policy and max lateness."),
    PlatformTick("flowdeck: reap lost runs", "orchestration.services.reaper.reap_lost_runs", 30,
                 "Crash runs whose lease expired and retry them per policy."),
    PlatformTick("flowdeck: announce silent agents", "orchestration.services.agents.announce_silent_agents", 15,
                 "Announce agents that went unhealthy or offline without a word."),
    PlatformTick("flowdeck: evaluate SLA policies", "orchestration.alerts.evaluator.evaluate_sla_policies", 15,
                 "Open, update and resolve incidents of every unpaused SLA policy."),
    PlatformTick("flowdeck: send due notifications", "orchestration.alerts.delivery.send_due_deliveries", 30,
                 "Send notifications whose delivery task was lost or whose next try is due."),
    PlatformTick("flowdeck: purge expired logs", "orchestration.services.logs.purge_expired_logs", 3600,
                 "Delete log lines older than each workspace's plan keeps them."),
    PlatformTick("flowdeck: report run overage", "billing.overage.report_overage", 300,
                 "Send runs past a metered plan's allowance to Stripe, each once."),
)


def tick_interval(tick: PlatformTick) -> int:
    """The tick's interval, or the test override from ``FLOWDECK_PLATFORM_TICK_SECONDS``."""
    override = os.environ.get(TICK_SECONDS_ENV, "").strip()
    if not override:
        return tick.every_seconds
    try:
        seconds = int(override)
    except ValueError:
        raise ValueError(f"{TICK_SECONDS_ENV} must be a whole number of seconds, not {override!r}") from None
    if seconds < 1:
        raise ValueError(f"{TICK_SECONDS_ENV} must be at least 1, not {seconds}")
    return seconds


def _registered(task_name: str) -> bool:
    import orchestration.tasks  # noqa: F401 - registers the shared tasks
    from config.celery import app

    return task_name in app.tasks


def install_platform_ticks(*, using: str = "default", report: Callable[[str], None] | None = None) -> list[str]:
    """Create or bring up to date the beat entry of every platform tick, and disable entries named
    ``flowdeck: …`` that are no longer platform ticks. Idempotent and safe to run concurrently
    (a migrate and a starting beat may race): rows are found by their unique names.

    Returns the names of the enabled platform ticks; ``report`` receives one line per change."""
    from django.db import transaction
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    say = report or logger.info
    installed: list[str] = []
    with transaction.atomic(using=using):
        wanted = set()
        for tick in PLATFORM_TICKS:
            if not _registered(tick.task):
                logger.warning("skipped %s: task %s is not registered", tick.name, tick.task)
                continue
            every = tick_interval(tick)
            interval = IntervalSchedule.objects.using(using).filter(
                every=every, period=IntervalSchedule.SECONDS).order_by("pk").first()
            if interval is None:
                interval = IntervalSchedule.objects.using(using).create(every=every, period=IntervalSchedule.SECONDS)
            wanted_fields = {"task": tick.task, "interval": interval, "crontab": None, "solar": None,
                             "clocked": None, "enabled": True, "one_off": False, "description": tick.description}
            task = PeriodicTask.objects.using(using).select_for_update().filter(name=tick.name).first()
            if task is None:
                task, created = PeriodicTask.objects.using(using).get_or_create(name=tick.name, defaults=wanted_fields)
                if created:
                    say(f"created {tick.name} (every {every} s)")
            changed = [f for f, v in wanted_fields.items() if getattr(task, f) != v]
            if changed:
                for field_name in changed:
                    setattr(task, field_name, wanted_fields[field_name])
                # save() (not update()) so the DatabaseScheduler of a running beat notices the change.
                task.save()
                say(f"updated {tick.name} (every {every} s)")
            wanted.add(task.pk)
            installed.append(tick.name)
        stale = PeriodicTask.objects.using(using).filter(name__startswith=PREFIX, enabled=True).exclude(pk__in=wanted)
        for task in stale:
            task.enabled = False
            task.save(update_fields=["enabled"])
            say(f"disabled {task.name} (no longer a platform tick)")
    return installed
