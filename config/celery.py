"""Celery application. Tasks are thin wrappers over services; beat holds only platform ticks."""

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("flowdeck")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("flowdeck.periodic")


@beat_init.connect
def install_platform_ticks_at_beat_start(sender: Any = None, **kwargs: Any) -> None:
    """A beat always starts with the platform ticks installed and up to date, whatever the
    deployment ran before it (migrate installs them too; this is the same idempotent code)."""
    from orchestration.periodic import install_platform_ticks

    installed = install_platform_ticks()
    logger.info("beat: %d platform tick(s) installed", len(installed))
