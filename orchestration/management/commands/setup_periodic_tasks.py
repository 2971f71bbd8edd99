"""Create (or bring up to date) the django-celery-beat rows of the platform ticks. Idempotent.

The same code already runs after every ``migrate`` and whenever Celery beat starts
(:func:`orchestration.periodic.install_platform_ticks`); this command stays as a manual tool, e.g.
to repair entries edited in the admin without restarting beat."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from orchestration.periodic import install_platform_ticks


class Command(BaseCommand):
    help = "Create or update the Celery beat entries of Flowdeck's platform ticks (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        installed = install_platform_ticks(report=self.stdout.write)
        self.stdout.write(f"{len(installed)} platform tick(s) installed")
