"""Celery tasks of the orchestration app.

The platform ticks (declared in :data:`orchestration.periodic.PLATFORM_TICKS`) are the periodic
services themselves, registered as ``orchestration.tasks.<service>_task``
(:func:`~orchestration.periodic.task_name`): each takes no arguments, opens its own transactions and
is safe to run twice at once (beat may overlap a slow run with the next one), so it needs no
wrapper. Beat holds only these ticks; one scheduler tick expands every customer schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

# The alert tasks live beside their services; importing them here registers them with the worker.
from billing.overage import report_overage
from orchestration.alerts import tasks_delivery, tasks_evaluate  # noqa: F401
from orchestration.periodic import task_name
from orchestration.services.agents import announce_silent_agents
from orchestration.services.late_runs import apply_catchup_policy, mark_late_runs
from orchestration.services.logs import purge_expired_logs
from orchestration.services.reaper import reap_lost_runs
from orchestration.services.scheduler import schedule_due_runs


def _platform_tick(service: Callable[..., int]) -> Any:
    return shared_task(name=task_name(service.__name__), ignore_result=True)(service)


schedule_due_runs_task = _platform_tick(schedule_due_runs)
mark_late_runs_task = _platform_tick(mark_late_runs)
apply_catchup_policy_task = _platform_tick(apply_catchup_policy)
reap_lost_runs_task = _platform_tick(reap_lost_runs)
announce_silent_agents_task = _platform_tick(announce_silent_agents)
purge_expired_logs_task = _platform_tick(purge_expired_logs)
report_overage_task = _platform_tick(report_overage)


@shared_task(name="orchestration.tasks.run_bulk_action_task", ignore_result=True)
def run_bulk_action_task(bulk_action_id: str) -> None:
    """A bulk action on runs too large for its request (queued by ``bulk_action_create``); runs
    it once, however often the task is delivered."""
    from orchestration.services.bulk_actions import bulk_action_run

    bulk_action_run(bulk_action_id=bulk_action_id)
