"""Celery tasks of notification delivery (imported by :mod:`orchestration.tasks`, so the worker
registers them under ``orchestration.tasks.*``).

``send_delivery_task`` makes one try and, when the delivery is left ``retrying`` (or ``pending``:
a resolution waiting for its opening message), schedules itself again for ``next_attempt_at``
(5 s, 10 s, 20 s … capped at 10 minutes, 8 tries at most; the counting is the delivery row's, so a
re-delivered task changes nothing).
``send_due_deliveries_task`` is the platform tick that catches deliveries whose task was lost.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.utils import timezone

from orchestration.alerts.delivery import send_delivery, send_due_deliveries
from orchestration.models import NotificationDelivery
from orchestration.periodic import task_name

logger = logging.getLogger(__name__)


@shared_task(name="orchestration.tasks.send_delivery_task", ignore_result=True)
def send_delivery_task(delivery_id: str) -> None:
    status = send_delivery(delivery_id)
    # retrying: the next try is due later; pending: it waits for the incident's opening message
    if status not in (NotificationDelivery.Status.RETRYING, NotificationDelivery.Status.PENDING):
        return
    _schedule_retry(delivery_id)


def _schedule_retry(delivery_id: str) -> None:
    from core.tenancy import rls_bypass

    with rls_bypass():
        next_at: Any = (NotificationDelivery.objects.unscoped().filter(pk=delivery_id)
                        .values_list("next_attempt_at", flat=True).first())
    if next_at is None:
        return
    countdown = max(0.0, (next_at - timezone.now()).total_seconds())
    try:
        send_delivery_task.apply_async(args=[delivery_id], countdown=countdown)
    except Exception:  # the broker is down: the periodic tick sends it when it is due
        logger.exception("could not schedule the next try of notification %s", delivery_id)


send_due_deliveries_task = shared_task(name=task_name("send_due_deliveries"), ignore_result=True)(
    send_due_deliveries
)
