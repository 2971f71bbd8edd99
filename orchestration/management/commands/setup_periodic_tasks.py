"""Create (or bring up to date) the django-celery-beat rows of the platform ticks. Idempotent: run
it on every deploy. Beat entries named ``flowdeck: …`` that are no longer platform ticks are
disabled, never one per customer schedule."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from orchestration.periodic import PLATFORM_TICKS

PREFIX = "flowdeck: "


def _registered(task_name: str) -> bool:
    import orchestration.tasks  # noqa: F401 - registers the shared tasks
    from config.celery import app

    return task_name in app.tasks


class Command(BaseCommand):
    help = "Create or update the Celery beat entries of Flowdeck's platform ticks (idempotent)."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        wanted = set()
        for tick in PLATFORM_TICKS:
            if not _registered(tick.task):
                self.stderr.write(f"skipped {tick.name}: task {tick.task} is not registered")
                continue
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=tick.every_seconds, period=IntervalSchedule.SECONDS
            )
            task, created = PeriodicTask.objects.update_or_create(
                name=tick.name,
                defaults={"task": tick.task, "interval": interval, "crontab": None, "solar": None,
                          "clocked": None, "enabled": True, "one_off": False, "description": tick.description},
            )
            wanted.add(task.pk)
            self.stdout.write(f"{'created' if created else 'updated'} {tick.name} (every {tick.every_seconds} s)")
        stale = PeriodicTask.objects.filter(name__startswith=PREFIX, enabled=True).exclude(pk__in=wanted)
        for task in stale:
            task.enabled = False
            task.save(update_fields=["enabled"])
            self.stdout.write(f"disabled {task.name} (no longer a platform tick)")
