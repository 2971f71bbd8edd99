"""Periodic wiring: Celery tasks are thin wrappers over the services, beat holds exactly the platform
ticks (setup_periodic_tasks, idempotent), and the embedded loop registers the same services."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils.module_loading import import_string
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.embedded import SERVICES, PeriodicLoop
from core.tenancy import rls_bypass
from orchestration import tasks
from orchestration.models import FlowRun
from orchestration.periodic import PLATFORM_TICKS
from tests.orchestration.factories import FlowRunFactory, FlowVersionFactory

from .factories import ScheduleFactory

ROOT = Path(__file__).resolve().parents[3]


def _count(**filters) -> int:
    with rls_bypass():
        return FlowRun.objects.unscoped().filter(**filters).count()


@pytest.mark.django_db
def test_task_wrappers_call_their_services(clock):
    # given a schedule, and a run long overdue of a flow that skips missed runs
    now = clock()
    version = FlowVersionFactory(flow__catchup="none")
    schedule = ScheduleFactory(flow=version.flow, interval_seconds=600, created_at=now, updated_at=now)
    overdue = FlowRunFactory(flow_version=version, flow=version.flow, workspace=version.workspace,
                             scheduled_start=now - timedelta(minutes=10), created_by_kind=FlowRun.CreatedBy.SCHEDULE)
    # when each task function runs
    assert tasks.schedule_due_runs_task() == 6
    assert tasks.mark_late_runs_task() == 1
    assert tasks.apply_catchup_policy_task() == 1
    assert tasks.reap_lost_runs_task() == 0
    assert isinstance(tasks.purge_expired_logs_task(), int)
    # then the services did their work
    assert _count(schedule=schedule) == 6
    with rls_bypass():
        assert FlowRun.objects.unscoped().get(pk=overdue.pk).state_name == "Skipped"


@pytest.mark.django_db
def test_setup_periodic_tasks_creates_exactly_the_platform_ticks_idempotently():
    # when the command runs twice
    call_command("setup_periodic_tasks", stdout=StringIO(), stderr=StringIO())
    call_command("setup_periodic_tasks", stdout=StringIO(), stderr=StringIO())
    # then there is one beat entry per platform tick, each with its interval, and nothing else
    entries = {t.name: (t.task, t.interval.every, t.interval.period, t.enabled)
               for t in PeriodicTask.objects.select_related("interval").exclude(name="celery.backend_cleanup")}
    assert entries == {
        tick.name: (tick.task, tick.every_seconds, IntervalSchedule.SECONDS, True) for tick in PLATFORM_TICKS
    }
    assert {
        "orchestration.tasks.schedule_due_runs_task": 10,
        "orchestration.tasks.mark_late_runs_task": 15,
        "orchestration.tasks.apply_catchup_policy_task": 15,
    }.items() <= {tick.task: tick.every_seconds for tick in PLATFORM_TICKS}.items()
    assert IntervalSchedule.objects.filter(every=10, period=IntervalSchedule.SECONDS).count() == 1


@pytest.mark.django_db
def test_setup_periodic_tasks_repairs_an_edited_entry_and_disables_a_retired_one():
    call_command("setup_periodic_tasks", stdout=StringIO(), stderr=StringIO())
    PeriodicTask.objects.filter(name=PLATFORM_TICKS[0].name).update(enabled=False)
    retired = PeriodicTask.objects.create(
        name="flowdeck: retired tick", task="orchestration.tasks.gone",
        interval=IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.SECONDS)[0],
    )
    call_command("setup_periodic_tasks", stdout=StringIO(), stderr=StringIO())
    assert PeriodicTask.objects.get(name=PLATFORM_TICKS[0].name).enabled is True
    retired.refresh_from_db()
    assert retired.enabled is False


def test_every_platform_tick_is_a_registered_task_and_runs_in_embedded_mode():
    from config.celery import app

    assert {tick.task for tick in PLATFORM_TICKS} <= set(app.tasks)
    paths = {service.path for service in SERVICES}
    assert {
        "orchestration.services.scheduler.schedule_due_runs",
        "orchestration.services.late_runs.mark_late_runs",
        "orchestration.services.late_runs.apply_catchup_policy",
        "orchestration.services.reaper.reap_lost_runs",
        "orchestration.services.logs.purge_expired_logs",
    } <= paths
    # every registered path resolves (the loop fails at start-up on a typo)
    assert len(PeriodicLoop(SERVICES).services) == len(SERVICES)
    # the two runners take the one list: each tick's task runs its service, and the embedded loop
    # runs every tick's service at the tick's interval
    for tick in PLATFORM_TICKS:
        assert app.tasks[tick.task].run is import_string(tick.service), tick.name
    assert [(s.path, s.every) for s in SERVICES] == [(t.service, t.every_seconds) for t in PLATFORM_TICKS]


@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_the_scheduler_tick(clock):
    # given a committed schedule and a Celery worker on Redis against the test database
    assert settings.CELERY_TASK_ALWAYS_EAGER is False  # the task really goes through the broker
    now = clock()
    schedule = ScheduleFactory(flow=FlowVersionFactory().flow, interval_seconds=600, created_at=now, updated_at=now)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DATABASE_POOL": "false",
    }
    queue = f"sched-test-{os.getpid()}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1",
         "-Q", queue, "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        # when the tick is sent through the broker
        tasks.schedule_due_runs_task.apply_async(queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _count(schedule=schedule) < 6 and worker.poll() is None:
            time.sleep(0.5)
        # then the worker materialised the schedule's runs
        assert _count(schedule=schedule) == 6, worker.stdout.read().decode() if worker.poll() is not None else ""
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
