"""Celery tasks of the orchestration app: thin, idempotent wrappers over the periodic services.

Each task takes no arguments and calls one plain service function that opens its own transactions
and is safe to run twice at once (beat may overlap a slow run with the next one). Beat holds only
these platform ticks (see :mod:`orchestration.periodic` and ``manage.py setup_periodic_tasks``);
one scheduler tick expands every customer schedule.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="orchestration.tasks.schedule_due_runs_task", ignore_result=True)
def schedule_due_runs_task() -> int:
    from orchestration.services.scheduler import schedule_due_runs

    return schedule_due_runs()


@shared_task(name="orchestration.tasks.mark_late_runs_task", ignore_result=True)
def mark_late_runs_task() -> int:
    from orchestration.services.late_runs import mark_late_runs

    return mark_late_runs()


@shared_task(name="orchestration.tasks.apply_catchup_policy_task", ignore_result=True)
def apply_catchup_policy_task() -> int:
    from orchestration.services.late_runs import apply_catchup_policy

    return apply_catchup_policy()


@shared_task(name="orchestration.tasks.reap_lost_runs_task", ignore_result=True)
def reap_lost_runs_task() -> int:
    from orchestration.services.reaper import reap_lost_runs

    return reap_lost_runs()


@shared_task(name="orchestration.tasks.announce_silent_agents_task", ignore_result=True)
def announce_silent_agents_task() -> int:
    from orchestration.services.agents import announce_silent_agents

    return announce_silent_agents()


@shared_task(name="orchestration.tasks.purge_expired_logs_task", ignore_result=True)
def purge_expired_logs_task() -> int:
    from orchestration.services.logs import purge_expired_logs

    return purge_expired_logs()


@shared_task(name="orchestration.tasks.run_bulk_action_task", ignore_result=True)
def run_bulk_action_task(bulk_action_id: str) -> None:
    """A bulk action on runs too large for its request (queued by ``bulk_action_create``); runs
    it once, however often the task is delivered."""
    from orchestration.services.bulk_actions import bulk_action_run

    bulk_action_run(bulk_action_id=bulk_action_id)
