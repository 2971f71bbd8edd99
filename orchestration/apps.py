from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OrchestrationConfig(AppConfig):
    """Projects, flows, runs, states, schedules, agents, logs. Filled by the orchestration issue."""

    name = "orchestration"

    def ready(self) -> None:
        # Infrastructure, not domain logic: every migrate (re)installs beat's platform ticks, so a
        # deployment never starts a beat with nothing to run (Celery beat's start does it too).
        post_migrate.connect(_install_platform_ticks, dispatch_uid="orchestration.periodic")


def _install_platform_ticks(sender: Any, using: str = "default", plan: Any = None, **kwargs: Any) -> None:
    # post_migrate fires once per app; run for ours, once django_celery_beat's tables exist.
    if sender.name != "orchestration":
        return
    from django.db import connections

    from orchestration.periodic import install_platform_ticks

    if "django_celery_beat_periodictask" not in connections[using].introspection.table_names():
        return  # migrated backwards past django_celery_beat: nothing to install into
    install_platform_ticks(using=using)
