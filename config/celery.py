"""Celery application. Tasks are thin wrappers over services; beat holds only platform ticks."""

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, import_modules

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("flowdeck")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("flowdeck.periodic")


@import_modules.connect
def refuse_unsafe_settings_at_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker or beat with a broken rule of the production security checklist exits before it
    runs or schedules anything (core/checks.py): the worker sends e-mails whose links the key
    signs. This is the first signal both send (before beat opens its schedule); SystemExit is not
    an Exception, so Celery's signal dispatch lets it through."""
    from core.checks import refuse_to_start_if_unsafe

    refuse_to_start_if_unsafe("celery")


@beat_init.connect
def install_platform_ticks_at_beat_start(sender: Any = None, **kwargs: Any) -> None:
    """A beat always starts with the platform ticks installed and up to date, whatever the
    deployment ran before it (migrate installs them too; this is the same idempotent code)."""
    from orchestration.periodic import install_platform_ticks

    installed = install_platform_ticks()
    logger.info("beat: %d platform tick(s) installed", len(installed))
